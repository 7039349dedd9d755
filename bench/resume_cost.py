"""What a ``--resume`` costs against what the killed search had left (issue 25, item 3).

On a planted model (tests/planted_helpers.py), through the real CLI, with a check function
that counts its calls (and sleeps a little, so that a search can be stopped part-way):

- fresh: a search run to its end: its journaled verdicts (plans judged) and its checks;
- killed: the same search stopped by SIGTERM once its journal holds ``--kill-at`` (a share
  of the fresh search's verdicts); then ``--resume``: the plans it judged afresh.

A resume saves the work when killed + resumed plans come to what one uninterrupted search
judges (up to the plans in flight at the kill). Checks count every call of the check:
plans judged, plus what each start costs (the switchboard's probe plans, the kernel-noise
band), which a resume pays again.

Run:  python bench/resume_cost.py --seeds 0 1 2 --blocks 24 --kill-at 0.5
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from planted_helpers import planted_file  # noqa: E402

COUNTING = ("import os\nimport time\n\n\ndef check(golden, outputs):\n"
            "    with open(os.path.join(os.path.dirname(__file__), 'checks.log'), 'a') as f:\n"
            "        f.write('x\\n')\n"
            "    time.sleep({sleep})\n"
            "    return True\n")


def args_of(d: Path, out: str, seed: int, extra: list[str], *more: str) -> list[str]:
    return [sys.executable, "-m", "distprec.cli", "search", str(d / "planted.onnx"),
            "--device", "cpu", "--workers", "2", "--samples", "2", "--seed", str(seed),
            "--atol", "0.3", "--rtol", "0.03", "--layer-errors", "none", "--no-live",
            "--check-func", f"{d / 'count.py'}:check", "-o", str(d / out),
            "--journal", str(d / f"{out}.journal.jsonl"), *extra, *more]


def env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(ROOT)}


def checks(d: Path) -> int:
    log = d / "checks.log"
    return len(log.read_text().splitlines()) if log.exists() else 0


def verdicts(journal: Path) -> int:
    if not journal.exists():
        return 0
    return sum(1 for line in journal.read_text().splitlines()[1:] if line.endswith("}"))


def fresh(d: Path, seed: int, extra: list[str], name: str) -> dict:
    before = checks(d)
    t0 = time.perf_counter()
    run = subprocess.run(args_of(d, f"{name}.json", seed, extra), env=env(),
                         capture_output=True, text=True)
    if run.returncode:
        raise SystemExit(f"fresh search failed:\n{run.stderr[-2000:]}")
    result = json.loads((d / f"{name}.json").read_text())
    return {"plans": verdicts(d / f"{name}.json.journal.jsonl"), "checks": checks(d) - before,
            "s": time.perf_counter() - t0, "answer": sorted(result["high_precision_layers"])}


def killed_then_resumed(d: Path, seed: int, extra: list[str], kill_at: int) -> dict:
    name = f"killed{seed}.json"
    journal = d / f"{name}.journal.jsonl"
    before = checks(d)
    proc = subprocess.Popen(args_of(d, name, seed, extra), env=env(),
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    while verdicts(journal) < kill_at:
        if proc.poll() is not None:
            raise SystemExit(f"the search ended before {kill_at} verdicts: lower --kill-at")
        time.sleep(0.005)
    proc.send_signal(signal.SIGTERM)
    proc.communicate(timeout=120)
    journaled, spent = verdicts(journal), checks(d) - before
    before = checks(d)
    run = subprocess.run(args_of(d, name, seed, extra, "--resume"), env=env(),
                         capture_output=True, text=True)
    if run.returncode:
        raise SystemExit(f"resumed search failed:\n{run.stderr[-2000:]}")
    result = json.loads((d / name).read_text())
    return {"killed_plans": journaled, "killed_checks": spent,
            "resumed_plans": verdicts(journal) - journaled, "resumed_checks": checks(d) - before,
            "answer": sorted(result["high_precision_layers"])}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--blocks", type=int, default=24, help="planted MLP blocks")
    ap.add_argument("--kill-at", type=float, default=0.5,
                    help="stop after this share of the fresh search's verdicts")
    ap.add_argument("--sleep", type=float, default=0.02, help="seconds a check sleeps")
    ap.add_argument("--fresh-runs", type=int, default=2, help="fresh searches per seed")
    ap.add_argument("--extra", default="", help="more CLI flags, e.g. '--evaluate candidate'")
    ap.add_argument("--json", help="write the rows here")
    opts = ap.parse_args()
    extra = opts.extra.split()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        planted_file(d, blocks=opts.blocks)
        (d / "count.py").write_text(COUNTING.format(sleep=opts.sleep))
        for seed in opts.seeds:
            runs = [fresh(d, seed, extra, f"fresh{seed}-{i}") for i in range(opts.fresh_runs)]
            plans = [r["plans"] for r in runs]
            kill_at = max(1, round(opts.kill_at * statistics.median(plans)))
            k = killed_then_resumed(d, seed, extra, kill_at)
            total = k["killed_plans"] + k["resumed_plans"]
            row = {"seed": seed, "fresh_plans": plans, "fresh_checks": [r["checks"] for r in runs],
                   **{x: y for x, y in k.items() if x != "answer"},
                   "total_plans": total, "total_checks": k["killed_checks"] + k["resumed_checks"],
                   "same_answer": k["answer"] == runs[0]["answer"]}
            rows.append(row)
            print(f"seed {seed}: fresh {plans} plans ({row['fresh_checks']} checks); killed "
                  f"after {k['killed_plans']} plans ({k['killed_checks']} checks), resumed "
                  f"{k['resumed_plans']} plans ({k['resumed_checks']} checks): "
                  f"{total} plans, {row['total_checks']} checks in all; "
                  f"same answer: {row['same_answer']}", flush=True)
    if opts.json:
        Path(opts.json).write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
