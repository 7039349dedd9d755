"""The sweep's live view: one row per search, from each search's own events."""

from __future__ import annotations

from rich.console import Console

from distprec.evaluator import Evaluation
from distprec.strategies import Verdict
from distprec.view.sweep import SweepView


def test_rows_follow_each_search(monkeypatch):
    console = Console(record=True, width=80, color_system=None, force_terminal=False)
    view = SweepView(["nano/fp16", "nano/int8", "xavier-nx/int8"], console, live=False)
    view.sink("nano/int8")("pair", {"status": "skipped"})
    fp16 = view.sink("nano/fp16")
    fp16("pair", {"status": "running"})
    fp16("workers", {"workers": [("w0", "n1", "cpu"), ("w1", "n1", "cpu")]})
    fp16("start", {"worker": "w0", "size": 7, "depth": 1})
    for size, verdict in ((12, Verdict.PASS), (3, Verdict.FAIL), (7, Verdict.PASS)):
        fp16("done", {"worker": "w1", "depth": 2,
                      "evaluation": Evaluation(frozenset(f"l{i}" for i in range(size)),
                                               verdict, start=1.0, end=2.0)})
    view.log("[nano/fp16] started")
    console.print(view.frame())
    text = console.export_text()
    assert "nano/fp16" in text and "running" in text and "1/2" in text  # one busy of two
    rows = {line.split()[0]: line.split() for line in text.splitlines()
            if line.strip() and "/" in line.split()[0]}
    assert rows["nano/int8"][1:] == ["skipped"]
    assert rows["xavier-nx/int8"][1] == "waiting"
    assert rows["nano/fp16"][3:7] == ["3", "2/1", "2", "7"]  # evals, pass/fail, round, best
    assert all(len(line) <= 80 for line in text.splitlines())
    assert "\x1b[" not in text
