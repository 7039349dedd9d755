"""Confirmation on real candidates: the answer never rests on a switchboard verdict alone.

The two ways of evaluating are oracles here (microseconds, no Ray): ``switch`` stands for
the switchboard, ``real`` for real candidates, and they disagree where a fusion would.
"""

from __future__ import annotations

from strategy_oracles import layers, needs

from distprec.actors.loop import LoopResult
from distprec.confirm import confirmed_search
from distprec.evaluation.removals import VIA as SCREEN
from distprec.evaluation.removals import Removals
from distprec.evaluator import Evaluation
from distprec.strategies import Verdict, make_strategy
from distprec.strategies.simulate import simulate

LAYERS = layers(40)
BAD = {"L0005", "L0021", "L0033"}


def oracle_run(switch, real, workers: int = 3, calls: list | None = None,
               figures=lambda keep, via: {}, screen=None):
    """A ``Run`` whose verdicts come from ``switch``, ``real`` or ``screen`` (the answer's
    own switchboard; ``real`` when not given) by the way asked (None: the workers' path in
    use, the switchboard here). A verdict a second: told_s and wall_s count verdicts, and a
    budget of B seconds keeps the first B."""
    def run(strategy, via, budget=None):
        if isinstance(via, Removals):
            way, oracle = SCREEN, screen or real
        else:
            way = via or "switchboard"
            oracle = real if way == "candidate" else switch
        sim = simulate(strategy, oracle, workers)
        history = sim.history[:int(budget)] if budget is not None else sim.history
        if calls is not None:
            calls.append((way, [k for k, _ in history]))
        return LoopResult([Evaluation(k, v, figures=figures(k, way), via=way)
                           for k, v in history],
                          told_s={k: i + 1.0 for i, (k, _) in enumerate(history)},
                          rounds=sim.rounds, wall_s=float(len(history)),
                          out_of_time=len(history) < len(sim.history))
    return run


def make():
    return make_strategy("bisect+minimize", LAYERS)


def test_agreeing_ways_confirm_the_answer_and_its_removals_once():
    calls = []
    outcome, loop, conf = confirmed_search(make, oracle_run(needs(BAD), needs(BAD), calls=calls))
    assert outcome.keep == BAD and outcome.minimal == "1-minimal"
    assert conf.passes == 1 and conf.disagreements == [] and conf.confirmed
    # The answer alone first, then its removals.
    assert [via for via, _ in calls] == ["switchboard", "candidate", "candidate"]
    assert calls[1][1] == [frozenset(BAD)]
    assert set(calls[2][1]) == {frozenset(BAD - {x}) for x in BAD}
    assert conf.candidates == 4 and conf.switchboard == len(loop.evaluations) - 4
    assert (conf.removals_confirmed, conf.removals) == (3, 3)
    # The answer is confirmed when its own candidate passes, before its removals are in.
    assert conf.answer_s == len(calls[0][1]) + 1
    assert conf.record()["answer_confirmed_s"] == conf.answer_s < loop.wall_s


def test_removals_are_confirmed_within_the_budget_the_answer_always():
    calls = []
    outcome, loop, conf = confirmed_search(make, oracle_run(needs(BAD), needs(BAD),
                                                            calls=calls), budget_s=2.0)
    assert outcome.keep == BAD and conf.confirmed and loop.out_of_time
    assert calls[1][1] == [frozenset(BAD)]  # the answer, outside the budget
    assert (conf.removals_confirmed, conf.removals) == (2, 3)
    assert conf.record()["removals_confirmed"] == [2, 3]


def test_a_disagreement_within_the_kernel_noise_is_an_edge_verdict():
    """Figures of both sides within the band: an edge verdict, which never sends the search
    to candidates alone; outside it (or with no band measured), a defect."""
    real_bad = BAD | {"L0010"}

    def figures(keep, via):  # the candidate's error a little over the switchboard's
        return {"y": {"max_abs": 0.11 if via == "candidate" else 0.1}}

    for band, edge in (({"y": {"max_abs": 0.01}}, True), ({"y": {"max_abs": 0.001}}, False),
                       (None, False)):
        _, _, conf = confirmed_search(make, oracle_run(needs(BAD), needs(real_bad),
                                                       figures=figures),
                                      band=lambda b=band: b)
        assert conf.disagreements and all(d["edge"] is edge for d in conf.disagreements)
        assert conf.edges == (len(conf.disagreements) if edge else 0)


def test_no_confirmed_answer_time_without_a_passing_answer():
    _, _, conf = confirmed_search(make, oracle_run(lambda keep: False, lambda keep: False))
    assert conf.answer_s is None and conf.record()["answer_confirmed_s"] is None


def test_a_disagreeing_candidate_overrides_the_switchboard_and_the_search_goes_on():
    # The switchboard misses that L0010 is needed (a fusion it breaks keeps it safe there).
    real_bad = BAD | {"L0010"}
    calls = []
    outcome, loop, conf = confirmed_search(make, oracle_run(needs(BAD), needs(real_bad),
                                                            calls=calls))
    assert outcome.passed and outcome.keep == real_bad and outcome.minimal == "1-minimal"
    assert conf.disagreements and conf.passes >= 2 and conf.confirmed
    assert {"keep", "size", "switchboard", "candidate"} <= set(conf.disagreements[0])
    assert conf.disagreements[0]["switchboard"] == "pass"
    assert conf.disagreements[0]["candidate"] == "fail"
    # The answer failed as a candidate (its removals are not confirmed then): the search
    # goes on on the switchboard, on the same kernels.
    assert [via for via, _ in calls][:3] == ["switchboard", "candidate", "switchboard"]
    # Every verdict the answer rests on came from a real candidate.
    candidate = {e.keep: e.verdict for e in loop.evaluations if e.via == "candidate"}
    assert candidate[frozenset(real_bad)] is Verdict.PASS
    assert all(candidate[frozenset(real_bad - {x})] is Verdict.FAIL for x in real_bad)


def test_switchboard_stricter_than_candidates_still_ends_confirmed():
    outcome, _, conf = confirmed_search(make, oracle_run(needs(BAD | {"L0030"}), needs(BAD)))
    assert outcome.keep == BAD and conf.confirmed and conf.disagreements


def test_nothing_passes_is_confirmed_on_the_all_high_candidate():
    never = lambda keep: False  # noqa: E731
    outcome, loop, conf = confirmed_search(make, oracle_run(never, never))
    assert not outcome.passed and conf.confirmed
    assert [e.keep for e in loop.evaluations if e.via == "candidate"] == [frozenset(LAYERS)]


def test_replayed_passes_evaluate_no_plan_twice_on_the_same_way():
    real_bad = BAD | {"L0010", "L0011"}
    _, loop, _ = confirmed_search(make, oracle_run(needs(BAD), needs(real_bad)))
    seen = [(e.keep, e.via) for e in loop.evaluations]
    assert len(seen) == len(set(seen))


def test_phases_add_up_in_the_reported_loop():
    """Search and confirmation run one after another: result.json's rounds, depths and
    fault counts must cover both phases, not only the last one."""
    a, b = frozenset({"L0001"}), frozenset({"L0002"})
    total = LoopResult()
    first = LoopResult([Evaluation(a, Verdict.PASS)], depth={a: 2}, rounds=2, cancelled=1,
                       driver_s=0.5, wall_s=2.0, lost_workers=["w0"], restarts=1, requeued=1)
    second = LoopResult([Evaluation(b, Verdict.FAIL)], depth={b: 1}, rounds=1, cancelled=2,
                        driver_s=0.25, wall_s=1.0, lost_workers=["w1"], gone=["w1"],
                        requeued=2, timeouts=3, stalled=True)
    total.add(first)
    total.add(second)
    assert [e.keep for e in total.evaluations] == [a, b]
    assert total.depth == {a: 2, b: 3} and total.rounds == 3  # b ran after a's two rounds
    assert (total.cancelled, total.requeued, total.restarts, total.timeouts) == (3, 3, 1, 3)
    assert total.driver_s == 0.75 and total.wall_s == 3.0
    assert total.lost_workers == ["w0", "w1"] and total.gone == ["w1"] and total.stalled
    total.add(LoopResult())
    assert total.stalled  # a later clean phase does not hide a stall


def test_a_resumed_search_evaluates_no_seeded_plan_again():
    """--resume seeds the verdicts of the journal: switchboard ones and candidate ones."""
    first_calls = []
    _, first, _ = confirmed_search(make, oracle_run(needs(BAD), needs(BAD), calls=first_calls))
    switch = {e.keep: (e.verdict, None) for e in first.evaluations if e.via == "switchboard"}
    real = {e.keep: (e.verdict, None) for e in first.evaluations if e.via == "candidate"}
    outcome, loop, conf = confirmed_search(make, oracle_run(needs(BAD), needs(BAD)),
                                           seed=(switch, real))
    assert outcome.keep == BAD and outcome.minimal == "1-minimal" and conf.confirmed
    assert loop.evaluations == []


def test_a_switchboard_wrong_everywhere_hands_over_to_candidates():
    """A switchboard that passes every plan (it misses every needed layer) would need a
    confirmation for each wrong answer; after SWITCH_PASSES the search goes on candidates."""
    from distprec.confirm import SWITCH_PASSES

    calls = []
    always = lambda keep: True  # noqa: E731
    outcome, _, conf = confirmed_search(make, oracle_run(always, needs(BAD), calls=calls))
    assert outcome.keep == BAD and outcome.minimal == "1-minimal" and conf.confirmed
    searches = [via for via, plans in calls if plans and via != "candidate"]
    assert len(searches) <= SWITCH_PASSES and conf.passes == SWITCH_PASSES


def test_confirmation_is_announced_and_timed():
    """The console shows the confirmation phase; result.json's confirm_s is its wall time."""
    import time

    events = []
    t0 = time.perf_counter()
    _, _, conf = confirmed_search(make, oracle_run(needs(BAD), needs(BAD)),
                                  on_event=lambda kind, data: events.append((kind, data)))
    wall = time.perf_counter() - t0
    assert events == [("phase", {"name": "confirming on candidates (4 plans)"})]
    assert 0 < conf.confirm_s <= wall
    assert conf.record()["confirm_s"] == round(conf.confirm_s, 3)


def test_the_screen_judges_every_removal_on_one_board_and_candidates_only_the_answer():
    calls = []
    outcome, loop, conf = confirmed_search(make, oracle_run(needs(BAD), needs(BAD),
                                                            calls=calls), screen=True)
    assert outcome.keep == BAD and outcome.minimal == "1-minimal" and conf.confirmed
    assert [via for via, _ in calls] == ["switchboard", "candidate", SCREEN]
    assert set(calls[2][1]) == {frozenset(BAD - {x}) for x in BAD}
    assert (conf.removals_screened, conf.removals_confirmed, conf.removals) == (3, 0, 3)
    assert conf.screened == 3 and conf.candidates == 1
    assert conf.record()["removals_screened"] == [3, 3]


def test_a_given_budget_runs_the_screened_removals_as_candidates_too():
    calls = []
    _, _, conf = confirmed_search(make, oracle_run(needs(BAD), needs(BAD), calls=calls),
                                  screen=True, budget_s=100.0)
    assert [via for via, _ in calls] == ["switchboard", "candidate", SCREEN, "candidate"]
    assert (conf.removals_screened, conf.removals_confirmed) == (3, 3)


def test_where_the_screen_passes_a_removal_the_answer_shrinks_on_its_own_board():
    """The search's switchboard misses that L0005 is not needed; the answer's own board sees
    it, minimize runs there (no new pass of the search), and the smaller answer passes as a
    candidate: it is the answer, its removals judged on that board."""
    smaller = BAD - {"L0005"}
    calls = []
    outcome, loop, conf = confirmed_search(make, oracle_run(needs(BAD), needs(smaller),
                                                            calls=calls), screen=True)
    assert outcome.keep == smaller and outcome.minimal == "1-minimal" and conf.confirmed
    assert [via for via, _ in calls] == ["switchboard", "candidate", SCREEN, SCREEN,
                                         "candidate"]
    assert calls[-1][1] == [smaller] and conf.passes == 1
    assert (conf.removals, conf.removals_screened, conf.removals_confirmed) == (2, 2, 0)
    assert any("minimized there from 3 to 2 layers" in n for n in outcome.notes)
    assert {e.keep: e.verdict for e in loop.evaluations if e.via == SCREEN}[
        frozenset({"L0021"})] is Verdict.FAIL


def test_a_smaller_answer_that_fails_as_a_candidate_sends_the_removals_to_candidates():
    """The answer's board passes a smaller plan that its candidate fails: the passing
    removals are then judged as candidates, and theirs decide, as without the screen."""
    smaller = BAD - {"L0005"}
    calls = []
    outcome, _, conf = confirmed_search(make, oracle_run(needs(BAD), needs(BAD), calls=calls,
                                                         screen=needs(smaller)), screen=True)
    assert outcome.keep == BAD and conf.confirmed and not conf.disagreements
    assert [via for via, _ in calls] == ["switchboard", "candidate", SCREEN, SCREEN,
                                         "candidate", "candidate"]
    assert calls[-1][1] == [frozenset(smaller)]


def test_removals_the_screen_cannot_judge_go_to_candidates_within_the_budget():
    calls = []
    run = oracle_run(needs(BAD), needs(BAD), calls=calls)

    def screen_fails(strategy, via, budget=None):  # the answer's board failed to build
        loop = run(strategy, via, budget)
        if isinstance(via, Removals):
            for ev in loop.evaluations:
                ev.verdict = Verdict.ERROR
        return loop

    _, _, conf = confirmed_search(make, screen_fails, screen=True)
    assert [via for via, _ in calls] == ["switchboard", "candidate", SCREEN, "candidate"]
    assert (conf.removals_screened, conf.removals_confirmed) == (0, 3)
