"""A sweep whose evaluator is SIGKILLed mid-run (issue 13): the same answers as a clean
sweep, no verdict from the lost worker, and the table says what happened.

The real CLI in a subprocess of its own: ``distprec sweep --devices cpu`` starts a local
Ray instance that offers this host's kind, which the session's shared Ray does not. Both
sweeps run in that one process (one Ray start). The kill is a real SIGKILL of the actor
process, by the check function itself on the n-th call across the sweep (a counter file
with atomic appends), so it lands mid-evaluation at a repeatable point: the 12th plan judged
in a worker's main thread (the switchboard built beside the search calls the check too, in
a thread of its own, and is not counted).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from planted_helpers import planted_file

ROOT = Path(__file__).parents[1]

KILLER = '''
import os, sys, threading

def check(golden, outputs):
    armed = os.path.exists(COUNT)  # from the faulted sweep on
    # a worker, not the driver; and a plan it was sent, not its switchboard being built
    # beside the search (that thread may still run when its search has ended)
    if armed and any("default_worker" in a for a in sys.argv) \\
            and threading.current_thread() is threading.main_thread():
        fd = os.open(COUNT, os.O_WRONLY | os.O_APPEND)
        os.write(fd, b".")
        calls = os.lseek(fd, 0, os.SEEK_CUR)  # this call's own number: appends are atomic
        os.close(fd)
        if calls == KILL_AT:
            os.kill(os.getpid(), 9)
    return True
'''

RUN = '''
import sys
from distprec.cli import main
args = sys.argv[1:]
clean = main([*args, "-o", "clean.json"])
print("=" * 20, "faulted", flush=True)
open("count", "w").close()  # arms the check
sys.exit(clean * 10 + main([*args, "-o", "faulted.json"]))
'''


def test_a_killed_evaluator_changes_no_answer_of_the_sweep(tmp_path):
    model, path = planted_file(tmp_path, blocks=8)
    (tmp_path / "kill.py").write_text(f"COUNT = {str(tmp_path / 'count')!r}\nKILL_AT = 12\n"
                                      + KILLER)
    args = ["sweep", path, "--devices", "cpu", "--precision", "fp16,bf16", "--samples", "2",
            "--atol", "0.3", "--rtol", "0.03", "--check-func", "kill.py:check", "--no-live"]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.run([sys.executable, "-c", RUN, *args], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    clean = json.loads((tmp_path / "clean.json").read_text())
    faulted = json.loads((tmp_path / "faulted.json").read_text())
    assert (tmp_path / "count").stat().st_size > 4  # the kill landed, and the sweep went on
    for a, b in zip(clean["runs"], faulted["runs"], strict=True):
        assert b["status"] == a["status"] == "done"
        for key in ("passed", "high_precision_layers"):
            assert b[key] == a[key], (b["precision"], key)
        assert b["result"]["minimal"] == a["result"]["minimal"]
    fp16 = next(r for r in faulted["runs"] if r["precision"] == "fp16")
    assert set(fp16["high_precision_layers"]) == model.planted
    lost = {r["precision"]: r["result"]["faults"] for r in faulted["runs"]}
    assert sum(len(f["lost_workers"]) for f in lost.values()) == 1
    assert sum(f["requeued"] for f in lost.values()) >= 1
    for run in faulted["runs"]:  # a lost worker is never a verdict; each plan judged once
        history = run["result"]["history"]
        assert not any("died" in (h.get("reason") or "") for h in history)
        assert len({(tuple(h["keep"]), h["via"]) for h in history}) == len(history)
    table = " ".join(proc.stdout[proc.stdout.index("faulted"):].split())
    assert "recovered faults (no verdict came from a lost worker)" in table, table
    assert "1 worker lost" in table and "rerun" in table, table
    assert "(raylet)" not in proc.stdout + proc.stderr  # Ray's own lines: in the log
    assert "worker died" in (tmp_path / "faulted.log").read_text()
