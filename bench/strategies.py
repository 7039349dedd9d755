"""Evaluations, rounds and answer size of each strategy on planted models, for W = 1 and 4.

Real verdicts, simulated parallelism: every plan is judged by distprec's Evaluator (FP16
CPU emulation, the demo's check), once, and cached; strategies are driven by the pure
simulated loop (distprec.strategies.simulate), W plans per round, each strategy with its
own memo so its counts are its own. A round there is what the Ray loop counts as a round
when all evaluations take equally long. No Ray, so it runs in seconds.

    python bench/strategies.py                    # print the tables
    python bench/strategies.py --write docs/BENCHMARKS.md
"""

from __future__ import annotations

import argparse
import math
import platform
import random
import shlex
import statistics
import subprocess
import sys
import time
from pathlib import Path

from distprec.candidates.backends import OrtBackend
from distprec.candidates.model import layer_table, prepare_model
from distprec.candidates.rewrites import not_low
from distprec.data import input_specs, random_feeds
from distprec.demo import (
    DEMO_CHECK,
    planted_attention,
    planted_cnn,
    planted_mlp,
)
from distprec.evaluator import Evaluator, Setup
from distprec.search import reference_outputs
from distprec.strategies import Minimize, make_strategy
from distprec.strategies.simulate import simulate

STRATEGIES = ("bisect", "linear", "minimize", "sensitivity", "worst-first", "bisect+minimize",
              "worst-first+minimize", "sensitivity+minimize")
BEGIN, END = "<!-- bench/strategies.py: begin -->", "<!-- bench/strategies.py: end -->"
HEADING = "## Strategies (issue 3)"


class Judge:
    """Real verdicts and profiles of one model, each plan evaluated once."""

    def __init__(self, model, samples: int = 4) -> None:
        model = prepare_model(model)
        self.names = tuple(x.name for x in layer_table(model, not_low(model, "fp16"))
                           if x.searchable)
        feeds = random_feeds(input_specs(model), {}, seed=0, samples=samples)
        check = DEMO_CHECK
        setup = Setup(model.SerializeToString(), "fp16", self.names, feeds,
                      reference_outputs(model, feeds), check)
        self.ev = Evaluator(setup, OrtBackend("cpu", threads=1))
        self.verdicts: dict = {}
        self.profiles: dict = {}
        self.seconds = 0.0

    def oracle(self, keep):
        if keep not in self.verdicts:
            t0 = time.perf_counter()
            e = self.ev.evaluate(keep)
            self.seconds += time.perf_counter() - t0
            self.verdicts[keep] = (e.verdict, e.figures)
        return self.verdicts[keep]

    def profiler(self, keep):
        if keep not in self.profiles:
            t0 = time.perf_counter()
            self.profiles[keep] = self.ev.profile(keep)
            self.seconds += time.perf_counter() - t0
        return self.profiles[keep]

    def run(self, strategy, workers: int):
        return simulate(strategy, self.oracle, workers, profiler=self.profiler)


def strategy_table(judge: Judge, planted: frozenset[str], widths) -> list[str]:
    rows = ["| strategy | W | evaluations | rounds | answer size | exact | minimal |",
            "|---|---|---|---|---|---|---|"]
    for name in STRATEGIES:
        for w in widths:
            sim = judge.run(make_strategy(name, judge.names), w)
            keep = sim.outcome.keep
            rows.append(f"| {name} | {w} | {sim.evaluations} | {sim.rounds} | "
                        f"{len(keep) if keep is not None else '-'} | "
                        f"{'yes' if keep == planted else 'no'} | {sim.outcome.minimal} |")
    return rows


def target_lines(judge: Judge, planted: frozenset[str], widths) -> list[str]:
    """Minimize alone from bisect's answer (its own memo), against the issue's targets."""
    n, k = len(judge.names), len(planted)
    bound = 8 * k * math.ceil(math.log2(n))
    out, rounds = [], {}
    for w in widths:
        start = judge.run(make_strategy("bisect", judge.names), w).outcome.keep
        sim = judge.run(Minimize(judge.names, start=start), w)
        rounds[w] = sim.rounds
        out.append(f"- W = {w}: minimize from bisect's {len(start)}-layer answer: "
                   f"{sim.evaluations} evaluations (target <= 8 x k x ceil(log2 N) = "
                   f"8 x {k} x {math.ceil(math.log2(n))} = {bound}: "
                   f"{'met' if sim.evaluations <= bound else 'NOT met'}), {sim.rounds} rounds, "
                   f"answer {len(sim.outcome.keep or ())} layers "
                   f"({'exact' if sim.outcome.keep == planted else 'not exact'}).")
    if 1 in rounds and 4 in rounds:
        half = rounds[4] <= rounds[1] / 2
        out.append(f"- Rounds W = 4 / W = 1: {rounds[4]} / {rounds[1]} = "
                   f"{rounds[4] / rounds[1]:.2f} (target <= 0.5: {'met' if half else 'NOT met'}).")
    return out


def random_sets_lines(n: int = 252, sets: int = 20) -> list[str]:
    """Minimize's rounds at W = 4 over W = 1 from bisect's start, for random needed sets
    (monotone verdicts: a plan passes when it keeps every needed layer)."""
    rng = random.Random(0)
    names = [f"L{i:03d}" for i in range(n)]
    rows = ["| needed layers | min | median | max |", "|---|---|---|---|"]
    for k in (1, 2, 3, 4, 6, 8, 16):
        ratios = []
        for _ in range(sets):
            bad = frozenset(rng.sample(names, k))
            rounds = {}
            for w in (1, 4):
                start = simulate(make_strategy("bisect", names), bad.issubset, w).outcome.keep
                rounds[w] = simulate(Minimize(names, start=start), bad.issubset, w).rounds
            ratios.append(rounds[4] / rounds[1])
        rows.append(f"| {k} | {min(ratios):.2f} | {statistics.median(ratios):.2f} | "
                    f"{max(ratios):.2f} |")
    return [f"Minimize's rounds at W = 4 over W = 1 (from bisect's start), {sets} random needed "
            f"sets per row among {n} layers, simulated verdicts:", "", *rows]


def models_table(w: int) -> list[str]:
    rows = ["| model | searchable layers | planted | bisect answer | bisect+minimize answer | "
            "exact | evaluations (bisect / +minimize) |", "|---|---|---|---|---|---|---|"]
    kinds = {"MLP (planted_mlp)": planted_mlp(), "CNN (planted_cnn)": planted_cnn(),
             "attention (planted_attention)": planted_attention()}
    for label, planted in kinds.items():
        judge = Judge(planted.model)
        b = judge.run(make_strategy("bisect", judge.names), w)
        m = judge.run(make_strategy("bisect+minimize", judge.names), w)
        rows.append(f"| {label} | {len(judge.names)} | {len(planted.planted)} "
                    f"({', '.join(planted.plant_kinds)}) | {len(b.outcome.keep or ())} | "
                    f"{len(m.outcome.keep or ())} | "
                    f"{'yes' if m.outcome.keep == planted.planted else 'no'} | "
                    f"{b.evaluations} / {m.evaluations} |")
    return rows


def machine() -> str:
    cpu = platform.processor() or "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    cores = subprocess.run(["nproc"], capture_output=True, text=True).stdout.strip()
    return f"{cores} cores (nproc), {cpu}, Python {platform.python_version()}"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--blocks", type=int, default=60, help="planted_mlp blocks (4 layers "
                        "each; the default 60 gives 252 searchable layers)")
    parser.add_argument("--widths", type=int, nargs="+", default=[1, 4])
    parser.add_argument("--write", help="put the tables into this markdown file")
    args = parser.parse_args(argv)
    t0 = time.perf_counter()
    planted = planted_mlp(blocks=args.blocks)
    judge = Judge(planted.model)
    lines = [f"Planted MLP: `planted_mlp(blocks={args.blocks})`, {len(judge.names)} searchable "
             f"layers, 3 plants (overflow, underflow, overflow) = {len(planted.planted)} layers "
             "that must stay FP32. FP16 CPU emulation, check atol 0.3 / rtol 0.03, 4 samples. "
             "Real verdicts, simulated W workers (one round = W plans judged side by side).",
             "", *strategy_table(judge, planted.planted, args.widths), "",
             *target_lines(judge, planted.planted, args.widths), "",
             f"The same check on the other generated models (W = {max(args.widths)}):", "",
             *models_table(max(args.widths)), "", *random_sets_lines(), ""]
    wall = time.perf_counter() - t0
    command = "python bench/strategies.py " + " ".join(shlex.quote(a) for a in (argv or
                                                                                sys.argv[1:]))
    lines += [f"Command: `{command.strip()}`; machine: {machine()}; {len(judge.verdicts)} "
              f"distinct plans and {len(judge.profiles)} profiles of the MLP evaluated in "
              f"{judge.seconds:.1f} s, whole run {wall:.1f} s."]
    text = "\n".join(lines)
    print(text)
    if args.write:
        write_section(Path(args.write), text)
    return 0


def write_section(path: Path, text: str) -> None:
    """Replace this script's block under HEADING (creating either when missing)."""
    block = f"{BEGIN}\n{text}\n{END}"
    doc = path.read_text() if path.is_file() else "# Benchmarks\n"
    if BEGIN in doc and END in doc:
        doc = doc[:doc.index(BEGIN)] + block + doc[doc.index(END) + len(END):]
    elif HEADING in doc:
        at = doc.index(HEADING) + len(HEADING)
        doc = doc[:at] + "\n\n" + block + doc[at:]
    else:
        doc = doc.rstrip("\n") + f"\n\n{HEADING}\n\n{block}\n"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(doc)


if __name__ == "__main__":
    sys.exit(main())
