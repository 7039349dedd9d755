"""Searches on "boards" behind a real OpenSSH server on 127.0.0.1 (no Jetson here).

The board's runner is distprec/boards/remote_eval.py under this venv's Python; everything
between the driver loop and it is the real path: Ray proxy actors, an OpenSSH control
master, hash-checked copies, the runner protocol, the host-side check.
"""

from __future__ import annotations

import ast
import dataclasses
import shutil
import subprocess
from pathlib import Path

import pytest
import ray
from planted_helpers import CHECK, planted_file

from distprec.actors.loop import Faults, drive
from distprec.actors.pool import stop_workers
from distprec.boards import remote_eval
from distprec.boards.actor import start_proxies
from distprec.boards.inventory import load_inventory
from distprec.errors import InputError
from distprec.search import SearchConfig, prepare, run_search
from distprec.strategies import make_strategy
from distprec.strategies.base import Verdict


@pytest.fixture(scope="module")
def planted(tmp_path_factory):
    return planted_file(tmp_path_factory.mktemp("boards"), blocks=12)


def _boards(tmp_path, *servers, names=("b1", "b2")):
    inv = tmp_path / "devices.yaml"
    inv.write_text("boards:\n" + "".join(s.inventory_entry(n) for s, n in zip(servers, names)))
    return load_inventory(inv)


def _cfg(path, **kw):
    return SearchConfig(model=path, precision="fp16", device="cpu", samples=2, check=CHECK,
                        layer_errors="none", **kw)


def test_runner_is_python36_syntax():
    source = Path(remote_eval.__file__).read_text()
    ast.parse(source, feature_version=(3, 6))  # walrus, match, etc. fail here
    vermin = shutil.which("vermin")
    if vermin is None:
        pytest.skip("vermin is not installed (the minimum-version checker)")
    done = subprocess.run([vermin, "-t=3.6-", "--violations", "--no-tips", "-q",
                           remote_eval.__file__], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr


def test_switchboard_search_on_a_board_finds_the_planted_layers(ray_session, sshd, planted,
                                                                  tmp_path):
    model, path = planted
    cfg = _cfg(path, strategy="bisect+minimize")
    prep = prepare(cfg)
    workers = start_proxies(ray.put(prep.setup(cfg)), _boards(tmp_path, sshd))
    try:
        assert workers[0].via == "switchboard" and workers[0].device == "nano:b1/cpu"
        report = run_search(cfg, prepared=prep, workers=workers)
        stats = ray.get(workers[0].handle.stats.remote())
    finally:
        stop_workers(workers)
    assert report.outcome.keep == model.planted
    assert report.confirmation is not None  # switchboard verdicts, confirmed on candidates
    evs = report.loop.evaluations
    assert evs and {e.device for e in evs} == {"nano:b1/cpu"}
    assert {e.via for e in evs} == {"switchboard", "candidate"}
    # every plan ran on the board: candidates one a run, switchboard plans stacked
    switched = sum(e.via == "switchboard" for e in evs)
    per_run = workers[0].plans_per_run
    assert stats["runs"] >= len(evs) - switched + -(-switched // per_run)
    assert stats["reconnects"] == 0


class Dropper:
    """Kills the server side of every SSH connection when the n-th plan is handed out."""

    def __init__(self, server, at):
        self.server, self.at, self.starts, self.drops = server, set(at), 0, 0

    def __call__(self, kind, data):
        if kind == "start":
            self.starts += 1
            if self.starts in self.at:
                self.drops += self.server.drop_connections()


def test_dropped_connections_mid_search_are_never_verdicts(ray_session, sshd, planted,
                                                            tmp_path):
    _, path = planted
    cfg = _cfg(path, evaluate="candidate")
    prep = prepare(cfg)
    setup = ray.put(prep.setup(cfg))
    boards = _boards(tmp_path, sshd)

    def run(at):
        workers = start_proxies(setup, boards, max_restarts=2)
        dropper = Dropper(sshd, at)
        s = make_strategy("bisect", prep.searchable, "forward")
        try:
            loop = drive(s, workers, dropper, via="candidate")
            stats = ray.get(workers[0].handle.stats.remote())
        finally:
            stop_workers(workers)
        return s.result(), loop, dropper, stats

    clean, clean_loop, _, _ = run(())
    outcome, loop, dropper, stats = run((2, 5, 9))
    assert dropper.drops >= 3
    assert outcome.keep == clean.keep
    assert [e.keep for e in loop.evaluations] == [e.keep for e in clean_loop.evaluations]
    assert all(e.verdict is not Verdict.ERROR for e in loop.evaluations)
    assert stats["reconnects"] + loop.requeued >= 1  # reconnected in place, or requeued


def test_a_board_that_goes_away_loses_no_plan(ray_session, sshd, sshd2, planted, tmp_path):
    """The second board's server stops mid-search: its plans finish on the first board."""
    _, path = planted
    cfg = _cfg(path, evaluate="candidate")
    prep = prepare(cfg)
    setup = ray.put(prep.setup(cfg))
    workers = start_proxies(setup, _boards(tmp_path, sshd, sshd2), max_restarts=1)
    seen = {"starts": 0}

    def stop_b2(kind, data):
        if kind == "start":
            seen["starts"] += 1
            if seen["starts"] == 6:
                sshd2.stop()

    s = make_strategy("bisect", prep.searchable, "forward")
    try:
        loop = drive(s, workers, stop_b2, via="candidate", faults=Faults(restart_wait=30))
    finally:
        stop_workers(workers)
    errors = [e.reason for e in loop.evaluations if e.verdict is Verdict.ERROR]
    assert s.done and not errors, errors
    # lost and requeued; "gone" too unless the search ended while Ray was still restarting it
    assert "b2" in loop.lost_workers and loop.requeued >= 1
    assert {e.worker for e in loop.evaluations} == {"b1", "b2"}


def test_an_unreachable_board_is_refused_at_start(ray_session, sshd, planted, tmp_path):
    _, path = planted
    cfg = _cfg(path)
    prep = prepare(cfg)
    (board,) = _boards(tmp_path, sshd)
    closed = dataclasses.replace(board, port=1)
    with pytest.raises(InputError, match="a board cannot be used: .*b1"):
        start_proxies(ray.put(prep.setup(cfg)), [closed], timeout=60)
