"""The live dashboard, the plain log and the summary, from synthetic events; and the
real demo in a real terminal (tmux)."""

from __future__ import annotations

import io
import logging
import os
import re
import shutil
import subprocess
import sys
import time
import uuid

import pytest
from rich.console import Console

from distprec.checks import CheckSpec
from distprec.evaluator import Evaluation
from distprec.search import SearchConfig
from distprec.strategies.base import Verdict
from distprec.view.console import PlainLog, SearchConsole, summary_table
from distprec.view.dashboard import Dashboard, render

LAYERS = 120
ANSWER = 37  # the smallest passing plan size of the synthetic search
CURSOR = re.compile(r"\x1b\[[0-9;?]*[ABCDEFGHJKSTfhlnsu]")  # movement, erase, show/hide


def config() -> SearchConfig:
    return SearchConfig(model="models/net.onnx", precision="fp16", strategy="bisect",
                        check=CheckSpec(atol=(("", 0.3),), rtol=(("", 0.03),)))


def synthetic_events(n_workers: int, rounds: int = 3):
    """Events in the order the driver loop emits them: phases, workers, then start/done
    pairs in rounds. Plan sizes >= ANSWER pass; every worker gets one plan per round."""
    yield "phase", {"name": "golden", "total": 4, "done": 0}
    for i in range(1, 5):
        yield "phase", {"name": "golden", "total": 4, "done": i}
    yield "phase", {"name": "ready", "searchable": LAYERS, "layers": LAYERS + 3}
    yield "phase", {"name": "cluster", "address": "local"}
    workers = [(f"w{i}", f"node{i // 4}", f"cuda:{i % 4}") for i in range(n_workers)]
    yield "workers", {"workers": workers, "device": "cuda",
                      "cluster": {"nodes": (n_workers + 3) // 4, "gpus": n_workers, "cpus": 8}}
    t = 1000.0
    for depth in range(1, rounds + 1):
        sizes = [ANSWER + (i - n_workers // 2) * (4 - depth) for i in range(n_workers)]
        status = {"round": depth, "bounds": (ANSWER - 5 * (4 - depth), ANSWER + 3), "points": 2}
        for (name, _, _), size in zip(workers, sizes):
            yield "start", {"worker": name, "size": size, "keep": frozenset(),
                            "depth": depth, "status": status}
        for (name, node, device), size in zip(workers, sizes):
            passed = size >= ANSWER
            ev = Evaluation(frozenset(f"layer{j}" for j in range(size)),
                            Verdict.PASS if passed else Verdict.FAIL,
                            figures={"logits": {"max_abs": 0.01 if passed else float("inf")}},
                            reason="" if passed else "logits: 8 NaN/Inf values",
                            worker=name, node=node, device=device, start=t, end=t + 1.0)
            t += 0.1
            yield "done", {"worker": name, "evaluation": ev, "depth": depth,
                           "status": status}


def best_size(n_workers: int, rounds: int = 3) -> int:
    return min(data["evaluation"].keep.__len__() for kind, data in
               synthetic_events(n_workers, rounds)
               if kind == "done" and data["evaluation"].verdict.passed)


def filled_state(n_workers: int) -> Dashboard:
    state = Dashboard.from_config(config(), now=0.0)
    for step, (kind, data) in enumerate(synthetic_events(n_workers)):
        state.apply(kind, data, now=0.01 * step, clock="12:00:00")
    return state


def as_text(renderable, width: int = 80, height: int = 200) -> str:
    console = Console(record=True, width=width, height=height, color_system=None,
                      file=io.StringIO())
    console.print(renderable)
    return console.export_text()


@pytest.mark.parametrize("n", [1, 4, 12])
def test_dashboard_rows_counts_and_best_plan(n):
    state = filled_state(n)
    text = as_text(render(state, now=10.0))
    lines = text.splitlines()
    assert all(len(line) <= 80 for line in lines)
    assert "models/net.onnx" in text and "bisect" in text and "atol 0.3" in text
    assert f"{n} GPU" in text and f"{n} worker" in text
    for i in range(n):
        row = [line for line in lines if re.match(rf"w{i}\s", line)]
        assert len(row) == 1, f"one row for w{i}"
        assert f"node{i // 4}" in row[0] and "idle" in row[0]
        assert re.search(r"\s3\s", row[0]), "three evaluations done by each worker"
    assert f"evaluations {3 * n}" in text
    assert f"best passing plan: {best_size(n)} of {LAYERS}" in text
    assert "golden outputs" in text and "4/4" in text
    assert "round 3" in text


def test_dashboard_shows_busy_workers_and_their_plan_sizes():
    state = Dashboard.from_config(config(), now=0.0)
    events = list(synthetic_events(4, rounds=1))
    for kind, data in events[: -4]:  # every worker started, none finished
        state.apply(kind, data, now=1.0, clock="12:00:00")
    text = as_text(render(state, now=2.0))
    starts = [d for k, d in events if k == "start"]
    for d in starts:
        row = next(line for line in text.splitlines() if line.startswith(d["worker"] + " "))
        assert "busy" in row and f" {d['size']} " in row
    assert "running 4" in text and "none yet" in text


def test_dashboard_fits_a_short_terminal_with_12_workers():
    text = as_text(render(filled_state(12), now=10.0, height=24), height=24)
    lines = text.rstrip("\n").splitlines()
    assert len(lines) <= 23
    assert "more workers" in text
    assert "best passing plan" in text


def test_dashboard_lost_and_cancelled_workers():
    state = filled_state(2)
    state.apply("start", {"worker": "w1", "size": 5}, now=11.0, clock="12:00:01")
    state.apply("worker_lost", {"worker": "w1", "reason": "node died"}, 12.0, "12:00:02")
    state.apply("start", {"worker": "w0", "size": 6}, now=11.0, clock="12:00:01")
    state.apply("cancelled", {"worker": "w0", "size": 6}, 12.0, "12:00:02")
    text = as_text(render(state, now=13.0))
    assert re.search(r"w1\s.*lost", text) and "worker w1 lost: node died" in text
    assert "cancelled 1" in text and "keep 6 cancelled" in text


def run_console(console: Console, n_workers: int = 3, **kwargs) -> SearchConsole:
    sc = SearchConsole(config(), console=console, **kwargs)
    with sc:
        for kind, data in synthetic_events(n_workers):
            sc.on_event(kind, data)
    sc.summary(fake_result(n_workers))
    return sc


def fake_result(n_workers: int) -> dict:
    keep = [f"layer{j}" for j in range(best_size(n_workers))]
    history = [{"verdict": "pass", "t_start": i * 1.0, "t_end": i * 1.0 + 0.5, "size": 3}
               for i in range(3 * n_workers)]
    return {"high_precision_layers": keep, "searchable_layers": LAYERS, "passed": True,
            "minimal": "contiguous-minimal", "evaluations": len(history), "rounds": 3,
            "wall_s": 12.5, "search_s": 3.0 * n_workers / n_workers * 3, "workers": n_workers,
            "device": "cuda", "emulated": False, "exports": ["out/result.json", "out/x.html"],
            "notes": [], "history": history, "trtexec_command": "trtexec --onnx=m.onnx"}


def test_plain_mode_without_terminal_has_no_escape_codes():
    buf = io.StringIO()
    sc = run_console(Console(file=buf, width=80))  # not a terminal
    assert not sc.live
    out = buf.getvalue()
    assert "\x1b[" not in out
    lines = out.splitlines()
    assert re.match(r"\d\d:\d\d:\d\d search models/net.onnx", lines[0])
    assert any(re.match(r"\d\d:\d\d:\d\d #1 w\d: keep \d+ \(plan [0-9a-f]{8}\) -> (pass|fail)",
                        x) for x in lines)
    assert any("3 workers" in x for x in lines)
    assert "distprec result" in out and "worker utilisation" in out and "out/x.html" in out


def test_no_live_on_a_terminal_moves_no_cursor():
    buf = io.StringIO()
    sc = run_console(Console(file=buf, width=80, force_terminal=True, force_interactive=True),
                     live=False)
    assert not sc.live
    assert not CURSOR.search(buf.getvalue())


def test_plain_mode_paces_lines_for_large_searches():
    buf = io.StringIO()
    now = [0.0]
    sc = SearchConsole(config(), console=Console(file=buf, width=200), per_eval=4,
                       every_s=10.0, heartbeat_s=None, clock=lambda: now[0])
    with sc:
        for kind, data in synthetic_events(12):
            now[0] += 0.5 if kind == "done" else 0.0
            sc.on_event(kind, data)
    lines = [x for x in buf.getvalue().splitlines() if "#" in x or "progress" in x]
    per_eval = [x for x in lines if re.search(r"#\d+ ", x)]
    progress = [x for x in lines if "progress:" in x]
    # 36 evaluations over 18 s: 4 single lines, better plans, and 1 or 2 progress lines
    assert len(per_eval) < 12 and 1 <= len(progress) <= 2
    assert "from here on" in buf.getvalue()
    sc._plain.tick(now[0] + 60)  # no heartbeat once the search has finished
    assert buf.getvalue().count("progress:") == len(progress)


def test_plain_heartbeat_speaks_after_silence():
    lines: list[str] = []
    state = Dashboard.from_config(config(), now=0.0)
    log = PlainLog(lines.append, state, every_s=10.0)
    for kind, data in list(synthetic_events(2))[:9]:  # workers ready, nothing done yet
        state.apply(kind, data, now=1.0, clock="")
        log.on_event(kind, data, now=1.0)
    said = len(lines)
    log.tick(5.0)
    assert len(lines) == said
    log.tick(11.5)
    assert len(lines) == said + 1 and lines[-1].startswith("progress: 0 evaluations")
    log.tick(12.0)
    assert len(lines) == said + 1


def test_live_mode_draws_frames_and_routes_logs_and_fd2(capfd):
    buf = io.StringIO()
    console = Console(file=buf, width=80, height=40, force_terminal=True,
                      force_interactive=True, color_system=None)
    ray_logger = logging.getLogger("ray")
    before = list(ray_logger.handlers)
    sc = SearchConsole(config(), console=console)
    assert sc.live
    with sc:
        for kind, data in synthetic_events(4):
            sc.on_event(kind, data)
        ray_logger.error("a ray log line")
        os.write(2, b"a native stderr line\n")
    assert ray_logger.handlers == before
    out = buf.getvalue()
    assert "a ray log line" in out and "a native stderr line" in out
    assert "native stderr" not in capfd.readouterr().err
    last_frame = out[out.rfind("distprec models/net.onnx"):]
    for i in range(4):
        assert re.search(rf"w{i}\s+node", last_frame)
    assert f"best passing plan: {best_size(4)} of {LAYERS}" in last_frame


def test_summary_table_figures():
    text = as_text(summary_table(fake_result(2)))
    assert f"{best_size(2)} of {LAYERS} kept in FP32" in text
    assert "evaluations" in text and "6 (6 pass, 0 fail, 0 error)" in text
    assert "rounds" in text and "12.5 s" in text
    assert "worker utilisation" in text and "17%" in text  # 6 x 0.5 s / (2 x 9 s)
    assert "out/result.json" in text and "out/x.html" in text


def test_the_summary_says_where_the_removals_were_judged():
    how = {"mode": "auto", "switchboard_verdicts": 40, "candidate_verdicts": 1,
           "confirm_s": 1.0, "disagreements": [], "confirmed": True}
    screened = {**fake_result(1), "evaluation": {**how, "removals_confirmed": [0, 3],
                                                 "removals_screened": [3, 3]}}
    text = " ".join(as_text(summary_table(screened)).replace("│", " ").split())
    assert "of 3 single removals, 3 judged on the answer's own switchboard, 0 as " \
        "candidates" in text
    partly = {**screened, "evaluation": {**how, "removals_confirmed": [1, 3]}}
    text = " ".join(as_text(summary_table(partly)).replace("│", " ").split())
    assert "minimality confirmed on 1 of 3 single removals (the rest on the switchboard)" \
        in text


# -- a real terminal ----------------------------------------------------------------------
@pytest.mark.skipif(shutil.which("tmux") is None,
                    reason="tmux is not installed (apt-get install tmux): the live view "
                    "needs a real terminal to be seen")
def test_demo_live_view_in_tmux(tmp_path):
    sock = tmp_path / "tmux.sock"
    out = tmp_path / "demo"
    cmd = (f"env COLUMNS=100 {sys.executable} -m distprec.cli demo --blocks 12 --workers 2 "
           f"--out {out}; echo __EXIT__ $?; sleep 600")
    tmux = ["tmux", "-S", str(sock), "-f", "/dev/null"]
    session = f"dp{uuid.uuid4().hex[:6]}"
    subprocess.run([*tmux, "new-session", "-d", "-x", "100", "-y", "50", "-s", session, cmd],
                   check=True, cwd=os.getcwd())
    try:
        pane = ""
        deadline = time.monotonic() + 240  # a wait for the demo to end, not an assertion
        while time.monotonic() < deadline and "__EXIT__" not in pane:
            time.sleep(0.25)
            pane = subprocess.run([*tmux, "capture-pane", "-p", "-S", "-", "-t", session],
                                  capture_output=True, text=True).stdout
    finally:
        subprocess.run([*tmux, "kill-server"], capture_output=True)
    assert "__EXIT__ 0" in pane, pane[-3000:]
    assert pane.count("╭─ distprec") == 1, "one live frame on screen: nothing tore it"
    frame = pane[pane.index("╭─ distprec"):pane.index("distprec result")]
    for worker in ("w0", "w1"):
        assert re.search(rf"^{worker}\s+\S+\s+cpu\s+idle", frame, re.M), frame
    assert "2 workers" in frame and "best passing plan: " in frame
    assert "search (finished)" in frame
    assert "planted 6, found" in pane


def test_live_view_says_stopped_when_the_search_raises():
    buf = io.StringIO()
    console = Console(file=buf, width=80, height=40, force_terminal=True,
                      force_interactive=True, color_system=None)
    with pytest.raises(KeyboardInterrupt):
        with SearchConsole(config(), console=console) as sc:
            for kind, data in list(synthetic_events(2))[:12]:
                sc.on_event(kind, data)
            raise KeyboardInterrupt
    assert "search (stopped)" in buf.getvalue()


def test_finished_steps_fold_before_any_worker_row_is_hidden():
    """Each step of a search adds a line (confirming, the deployed file, timing...): on a
    short terminal the finished ones fold into one line, and every worker keeps its row."""
    state = filled_state(2)
    for i in range(10):
        state.apply("phase", {"name": f"step {i}"}, now=10.0 + i, clock="12:00:00")
    text = as_text(render(state, now=30.0, height=26), height=26)
    assert len(text.rstrip("\n").splitlines()) <= 25
    assert all(re.search(rf"^w{i}\s", text, re.M) for i in range(2))
    assert "more workers" not in text and "earlier steps" in text
    assert "step 9" in text and "running" in text  # the step under way is shown
