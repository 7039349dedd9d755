"""A partial result says how it knows (issue 25, item 3): which way each verdict was made,
how many rounds ran, and whether its best plan passed on a real candidate."""

from __future__ import annotations

from distprec.evaluator import Evaluation
from distprec.partial import Seen, partial_outcome
from distprec.strategies.base import Info, Verdict

P, F = Verdict.PASS, Verdict.FAIL


def _seen(*evs: tuple[set, Verdict, str, int]) -> Seen:
    seen = Seen()
    for keep, verdict, via, depth in evs:
        seen.add(Evaluation(frozenset(keep), verdict, via=via), depth)
    return seen


def test_switchboard_verdicts_alone_leave_the_best_plan_unconfirmed():
    seen = _seen(({"a", "b"}, P, "switchboard", 1), ({"a"}, P, "switchboard", 2),
                 (set(), F, "switchboard", 3))
    outcome, how = partial_outcome(seen, {}, "SIGTERM")
    assert outcome.passed and outcome.keep == frozenset({"a"}) and outcome.minimal == "none"
    assert how == {"mode": "switchboard", "switchboard_verdicts": 3, "candidate_verdicts": 0,
                   "journaled_verdicts": {"switchboard": 0, "candidate": 0},
                   "confirmed": False}
    assert any("NOT confirmed" in n for n in outcome.notes)
    assert seen.loop().rounds == 3 and seen.loop().depth[frozenset({"a"})] == 2


def test_a_candidate_verdict_wins_and_confirms():
    """The switchboard passed {a}; its candidate failed it, so the best is {a, b}, which a
    candidate passed: confirmed, both ways counted."""
    seen = _seen(({"a"}, P, "switchboard", 1), ({"a", "b"}, P, "switchboard", 1),
                 ({"a"}, F, "candidate", 2))
    known = {"candidate": {frozenset({"a", "b"}): (P, Info({}))}}
    outcome, how = partial_outcome(seen, known, "SIGINT")
    assert outcome.keep == frozenset({"a", "b"})
    assert how["mode"] == "both" and how["confirmed"]
    assert (how["switchboard_verdicts"], how["candidate_verdicts"]) == (2, 1)
    assert how["journaled_verdicts"] == {"switchboard": 0, "candidate": 1}
    assert not any("NOT confirmed" in n for n in outcome.notes)


def test_nothing_judged_yet():
    outcome, how = partial_outcome(Seen(), {}, "SIGTERM")
    assert not outcome.passed and how["mode"] == "none" and not how["confirmed"]
