"""Worker faults through real Ray actors: SIGKILLed and hung evaluators lose no verdict.

The kills land on chosen "start" events, so each test is repeatable: the answer and its
minimality claim must equal a fault-free run's, and every loss must be counted.
"""

from __future__ import annotations

import dataclasses
import os
import signal

import pytest
import ray
from planted_helpers import CHECK, planted_file

from distprec.actors.loop import Faults, drive
from distprec.actors.pool import start_workers, stop_workers
from distprec.errors import SearchError
from distprec.search import SearchConfig, prepare
from distprec.strategies import make_strategy


@pytest.fixture(scope="module")
def planted(tmp_path_factory):
    return planted_file(tmp_path_factory.mktemp("faults"), blocks=8)


def _setup(path, **check):
    cfg = SearchConfig(model=path, precision="fp16", device="cpu", samples=2,
                       check=dataclasses.replace(CHECK, **check), evaluate="candidate",
                       layer_errors="none")
    prep = prepare(cfg)
    return prep, ray.put(prep.setup(cfg))


class Killer:
    """SIGKILLs the actor that was just handed its n-th plan, for each n in ``at``."""

    def __init__(self, workers, at, only=None):
        self.by_name = {w.name: w for w in workers}
        self.pids = {w.name: w.pid for w in workers}
        self.at, self.only, self.starts, self.kills = set(at), only, 0, 0
        self.events: list[str] = []

    def __call__(self, kind, data):
        self.events.append(kind)
        if kind == "worker_restarted":  # a restarted actor is a new process
            w = self.by_name[data["worker"]]
            self.pids[w.name] = ray.get(w.handle.ready.remote())["pid"]
        if kind != "start":
            return
        self.starts += 1
        if (self.only is None and self.starts in self.at) or data["keep"] == self.only:
            os.kill(self.pids[data["worker"]], signal.SIGKILL)
            self.kills += 1


@pytest.mark.parametrize("strategy", ["bisect", "minimize"])
def test_killed_workers_change_nothing(ray_session, planted, strategy):
    model, path = planted
    prep, setup_ref = _setup(path)

    def run(at):
        workers = start_workers(setup_ref, "cpu", 2, max_restarts=4)
        killer = Killer(workers, at)
        s = make_strategy(strategy, prep.searchable, "forward")
        try:
            loop = drive(s, workers, killer, via="candidate")
        finally:
            stop_workers(workers)
        return s.result(), loop, killer

    clean, _, _ = run(())
    outcome, loop, killer = run((2, 5, 9))
    assert killer.kills == 3
    assert outcome == clean  # the answer and its minimality claim
    # A kill that lands on a call being cancelled shows up only if the actor is used
    # again; the last restart may still be under way when the search ends.
    lost = len(loop.lost_workers)
    assert 2 <= lost <= 3 and lost - 1 <= loop.restarts <= lost and not loop.gone
    assert loop.requeued == lost == killer.events.count("requeued")
    keeps = [e.keep for e in loop.evaluations]
    assert len(keeps) == len(set(keeps))  # each plan judged once, lost ones included
    assert all("died" not in e.reason for e in loop.evaluations)  # never a verdict


def test_a_plan_that_kills_every_worker_ends_the_search(ray_session, planted):
    model, path = planted
    prep, setup_ref = _setup(path)
    workers = start_workers(setup_ref, "cpu", 2, max_restarts=5)
    killer = Killer(workers, (), only=frozenset(prep.searchable))  # the all-high plan
    try:
        with pytest.raises(SearchError, match="killed 3 workers"):
            drive(make_strategy("bisect", prep.searchable, "forward"), workers, killer,
                  via="candidate", faults=Faults(max_losses=3))
    finally:
        stop_workers(workers)
    assert killer.kills == 3


def test_workers_out_of_restarts_end_the_search(ray_session, planted):
    model, path = planted
    prep, setup_ref = _setup(path)
    workers = start_workers(setup_ref, "cpu", 1, max_restarts=1)
    killer = Killer(workers, (1, 2, 3))
    try:
        with pytest.raises(SearchError, match="every evaluator actor died"):
            drive(make_strategy("bisect", prep.searchable, "forward"), workers, killer,
                  via="candidate")
    finally:
        stop_workers(workers)


HANG = '''
import os, time

def check(golden, outputs):
    arm = ARM
    if os.path.exists(arm):
        os.remove(arm)
        time.sleep(120)
    return True
'''


def _hung_search(path: str, tmp_path, faults: Faults):
    """A bisect whose check hangs once (on the first call after the arm file appears)."""
    func = tmp_path / "hang.py"
    arm = tmp_path / "arm"
    func.write_text(f"ARM = {str(arm)!r}\n{HANG}")
    prep, setup_ref = _setup(path, check_func=f"{func}:check")
    workers = start_workers(setup_ref, "cpu", 2, max_restarts=2)
    arm.touch()
    s = make_strategy("bisect", prep.searchable, "forward")
    try:
        loop = drive(s, workers, None, via="candidate", faults=faults)
    finally:
        stop_workers(workers)
    return s, loop, arm


def test_a_hung_evaluation_times_out_and_runs_elsewhere(ray_session, planted, tmp_path):
    s, loop, arm = _hung_search(planted[1], tmp_path, Faults(eval_timeout=3.0))
    assert not arm.exists()
    assert loop.timeouts == 1 and loop.requeued == 1 and loop.lost_workers and not loop.gone
    assert all(e.verdict.value != "error" for e in loop.evaluations)
    assert s.result().passed


def test_a_plan_out_of_timeouts_is_an_error_verdict(ray_session, planted, tmp_path):
    s, loop, _ = _hung_search(planted[1], tmp_path, Faults(eval_timeout=3.0, max_timeouts=1))
    errors = [e for e in loop.evaluations if e.verdict.value == "error"]
    assert loop.timeouts == 1 and loop.requeued == 0 and len(errors) == 1
    assert errors[0].reason.startswith("timeout: ran past --eval-timeout 3 s")
