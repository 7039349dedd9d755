"""The removals path: an answer's single removals on the answer's own switchboard, in
process and through Ray actors, against the verdicts of their real candidates."""

from __future__ import annotations

import pytest
import ray
from planted_helpers import CHECK, PLANTS, make_evaluator, planted_file

from distprec.actors.loop import REMOVALS_PER_CALL, drive
from distprec.actors.pool import start_workers, stop_workers
from distprec.demo import planted_mlp
from distprec.evaluation import removals as removals_module
from distprec.evaluation.removals import VIA, Removals
from distprec.search import SearchConfig, prepare
from distprec.strategies.base import Verdict
from distprec.strategies.replay import EachOnce


@pytest.fixture(scope="module")
def planted():
    return planted_mlp(blocks=12, plants=PLANTS)


def _answer_and_removals(planted, searchable):
    """The planted layers and two more (so that some removals pass): the plan and each
    plan with one layer of it lowered."""
    answer = frozenset(planted.planted) | frozenset(searchable[:2])
    return answer, [answer - {x} for x in sorted(answer)]


def test_removals_judged_on_the_answer_switchboard_equal_their_candidates(planted):
    """On the CPU emulation (unfused) the answer's switchboard and each removal's candidate
    compute the same values: verdicts and figures equal, bit for bit, passes and fails."""
    ev = make_evaluator(planted.model)
    ev.warm_up()
    answer, removals = _answer_and_removals(planted, ev.setup.searchable)
    screened = ev.evaluate_many(removals, via=Removals(answer))
    assert [e.via for e in screened] == [VIA] * len(removals)
    verdicts = set()
    for e in screened:
        candidate = ev.evaluate(e.keep, via="candidate")
        assert (e.verdict, e.figures) == (candidate.verdict, candidate.figures), sorted(e.keep)
        verdicts.add(e.verdict)
    assert verdicts == {Verdict.PASS, Verdict.FAIL}  # both kinds were compared
    # One board for the answer, built once: the next call reuses its session.
    board = ev._removals
    ev.evaluate_many(removals[:1], via=Removals(answer))
    assert ev._removals is board


def test_a_plan_outside_the_answer_or_a_board_that_fails_is_an_error_not_a_verdict(
        planted, monkeypatch):
    ev = make_evaluator(planted.model)
    ev.warm_up()
    answer, removals = _answer_and_removals(planted, ev.setup.searchable)
    outside = removals[0] | {ev.setup.searchable[-1]}
    got = ev.evaluate_many([removals[0], outside], via=Removals(answer))
    assert got[0].verdict is not Verdict.ERROR
    assert got[1].verdict is Verdict.ERROR and "not a subset of the answer" in got[1].reason

    def broken(*args, **kwargs):
        raise ValueError("no room")

    monkeypatch.setattr(removals_module.SwitchboardPath, "plain", broken)
    other = answer - {sorted(answer)[0]}  # another answer: a new board is built, and fails
    got = ev.evaluate_many([other - {x} for x in sorted(other)[:2]], via=Removals(other))
    assert all(e.verdict is Verdict.ERROR and "no room" in e.reason for e in got)


def test_removals_go_through_ray_workers_in_one_call_each(ray_session, tmp_path):
    model, path = planted_file(tmp_path, blocks=8)
    cfg = SearchConfig(model=path, precision="fp16", device="cpu", samples=2, check=CHECK,
                       evaluate="candidate", layer_errors="none")
    prep = prepare(cfg)
    workers = start_workers(ray.put(prep.setup(cfg)), "cpu", 2)
    try:
        answer, removals = _answer_and_removals(model, prep.searchable)
        events = []
        loop = drive(EachOnce(prep.searchable, removals), workers,
                     lambda kind, data: events.append((kind, data)), via=Removals(answer))
        assert loop.evaluations and {e.via for e in loop.evaluations} == {VIA}
        sent = [d["worker"] for k, d in events if k == "start"]
        assert len(sent) == len(removals) and len(set(sent)) == 2  # shared by both workers
        candidates = drive(EachOnce(prep.searchable, removals), workers, via="candidate")
        assert {e.keep: e.verdict for e in loop.evaluations} == \
            {e.keep: e.verdict for e in candidates.evaluations}
    finally:
        stop_workers(workers)
    assert REMOVALS_PER_CALL >= len(removals)


def test_the_removals_path_is_the_plain_where_form(planted):
    """No trials on the answer's board: a batched probe, timed batch sizes, a CUDA graph or
    a gated trial would each cost sessions, where its plans are judged once."""
    ev = make_evaluator(planted.model)
    ev.warm_up()
    answer, removals = _answer_and_removals(planted, ev.setup.searchable)
    ev.evaluate_many(removals[:1], via=Removals(answer))
    board = ev._removals.board
    assert board.plans_per_run == 1 and not board.board.batched and not board.board.gated
    assert board.board.columns == tuple(sorted(answer))
