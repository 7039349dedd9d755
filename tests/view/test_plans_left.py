"""The live view and the plain progress line say what minimize's fields mean, and how many
plans (and seconds) the strategy has left (issue 25, item 7)."""

from __future__ import annotations

import re

from test_console import as_text, config, synthetic_events

from distprec.view.console import PlainLog
from distprec.view.dashboard import Dashboard, render

#: What minimize's status said as "stage minimize, level 9, chunk 1, kept 275, left 139,
#: ahead 2": a chain at its minimize stage, 276 single-layer chunks, 137 of them asked.
STATUS = {"stage": "minimize", "level": 9, "chunk": 1, "chunks": 276, "kept": 275,
          "left": 139, "ahead": 2}


def minimize_events(plans_left: int | None, bound: bool = False):
    """The synthetic search (2 workers, 6 plans judged over 3 s after the first start at
    t = 1), each event carrying minimize's status and the plans it has left."""
    for kind, data in synthetic_events(2):
        if kind in ("start", "done"):
            data = {**data, "status": STATUS, "plans_left": plans_left, "left_bound": bound}
        yield kind, data


def state_at(events, step_s: float = 0.5) -> tuple[Dashboard, float]:
    state = Dashboard.from_config(config(), now=0.0)
    state.strategy = "bisect+minimize"
    now = 1.0
    for kind, data in events:
        state.apply(kind, data, now=now, clock="12:00:00")
        now += step_s if kind == "done" else 0.0
    return state, now


def test_live_view_says_what_minimize_fields_mean_and_what_is_left():
    state, now = state_at(minimize_events(42))
    text = as_text(render(state, now=now), width=80)
    flat = re.sub(r"\s+", " ", text)
    assert "bisect+minimize: stage minimize, granularity level 9" in flat
    assert "276 chunks of 1 layer; 275 layers kept so far" in flat
    assert "chunk removals: 137 asked, 139 still to test, 2 asked ahead of verdicts" in flat
    # 6 plans judged in 3 s since the first start: 0.5 s a plan, 42 plans -> 21 s
    assert "left: ~42 plans, ~21 s left (an estimate, at 0.5 s a plan so far)" in flat
    assert all(len(line) <= 80 for line in text.splitlines())


def test_live_view_says_an_upper_bound_and_nothing_when_unknown_or_finished():
    state, now = state_at(minimize_events(10, bound=True))
    assert "left: at most 10 plans, ~5 s left (at 0.5 s a plan so far)" in as_text(
        render(state, now=now), width=100)
    state, now = state_at(minimize_events(None))
    assert "left:" not in as_text(render(state, now=now), width=100)
    state, now = state_at(minimize_events(10))
    state.finished = now
    assert "left:" not in as_text(render(state, now=now), width=100)


def test_plain_progress_line_has_the_fields_in_words_and_the_time_left():
    lines: list[str] = []
    state = Dashboard.from_config(config(), now=0.0)
    state.strategy = "bisect+minimize"
    log = PlainLog(lines.append, state, every_s=10.0, per_eval=2)
    now = 1.0
    for kind, data in minimize_events(42):
        state.apply(kind, data, now=now, clock="")
        log.on_event(kind, data, now=now)
        now += 0.5 if kind == "done" else 0.0
    log.tick(now + 10.0)  # silence: the heartbeat's progress line
    line = lines[-1]
    assert line.startswith("progress: 6 evaluations")
    assert "bisect+minimize: stage minimize, granularity level 9, 276 chunks of 1 layer; " \
           "275 layers kept so far, chunk removals: 137 asked, 139 still to test" in line
    # 6 plans in 13 s since the first start (the silence included): ~2.2 s a plan
    assert "left: ~42 plans, ~2 min left (an estimate, at 2.2 s a plan so far)" in line
