"""Timing a deployable model: the run loop on a given clock, Cast counts, a real session."""

from __future__ import annotations

import itertools
from functools import partial

from planted_helpers import make_evaluator

from distprec.boards import remote_eval
from distprec.candidates.backends import OrtBackend
from distprec.demo import planted_mlp
from distprec.latency import Rule, count_casts, run_times, summary, time_model


def test_runs_until_enough_runs_and_enough_time_then_median_and_spread():
    ticks = itertools.count(step=0.01)  # each clock read moves 10 ms: a run takes 10 ms
    runs = []
    times = run_times(lambda: runs.append(1), Rule(warm=2, min_runs=5, min_time_s=0.2,
                                                   max_runs=100), clock=lambda: next(ticks))
    assert len(times) >= 5 and len(runs) == len(times) + 2  # warm-up runs are not timed
    median, spread = summary(times)
    assert abs(median - 0.01) < 1e-9 and spread < 1e-6
    capped = run_times(lambda: None, Rule(warm=0, min_runs=1, min_time_s=1e9, max_runs=7),
                       clock=lambda: next(ticks))
    assert len(capped) == 7
    assert summary([0.002]) == (0.002, 0.0)  # one run: no spread to speak of
    assert summary([1.0] * 8 + [2.0, 3.0])[1] > 0


def test_the_board_runner_times_by_the_hosts_rule_run_for_run():
    """The runner cannot import distprec: its loop, given the rule's record, must take the
    same runs at the same clock readings as the host's."""
    for rule in (Rule(), Rule(warm=0, min_runs=3, min_time_s=0.05, max_runs=4),
                 Rule(warm=5, min_runs=1, min_time_s=0.5, max_runs=500)):
        host_clock, board_clock = (
            partial(next, itertools.accumulate(itertools.cycle([0.001, 0.004, 0.02])))
            for _ in "ab")
        host = run_times(lambda: None, rule, clock=host_clock)
        board = remote_eval.timed_runs(lambda: None, rule.record(), clock=board_clock)
        assert board == host and host


def test_a_mixed_plan_adds_casts_and_is_timed_on_a_real_session():
    ev = make_evaluator(planted_mlp(blocks=4).model)
    timed = ev.timed()
    layers = sorted(ev.searchable)
    island = frozenset(layers[3:5])
    assert count_casts(ev.model) == 0
    assert count_casts(timed.deployable(island)) > count_casts(timed.deployable(frozenset()))
    timing = time_model(OrtBackend("cpu", threads=1), timed.deployable(island), ev.setup.feeds[0])
    assert timing.median_s > 0 and timing.runs >= 15 and timing.casts > 0
    (e,) = timed.evaluate([frozenset(layers)])
    assert e.via == "timed" and e.verdict.passed and e.latency["median_s"] > 0
    assert e.record()["latency"] == e.latency


def test_under_the_cpu_emulation_a_timed_plan_passes_only_as_the_file_and_emulated(
        monkeypatch):
    """The deployable file's own verdict counts: a plan the emulation passes and the file
    fails (its outputs doubled here) is a failing timed plan, never the latency answer."""
    planted = planted_mlp(blocks=4)
    ev = make_evaluator(planted.model)
    ev.warm_up()
    timed = ev.timed()
    keep = frozenset(ev.setup.searchable)
    assert timed.one(keep).verdict.passed
    run = timed.file.backend.run
    monkeypatch.setattr(timed.file.backend, "run", lambda session, feeds: [
        {k: v * 2 for k, v in out.items()} for out in run(session, feeds)])
    failed = timed.one(keep)
    assert not failed.verdict.passed and failed.latency is not None
    assert ev.candidates.one(keep).verdict.passed  # the emulation alone still passes it
