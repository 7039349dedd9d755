"""Bisect and linear against oracles: ground truth, counts, rounds, termination."""

from __future__ import annotations

import math
import random

import pytest

from distprec.strategies import Verdict, make_strategy
from distprec.strategies.prefix import Bisect, Linear

LAYERS = [f"l{i}" for i in range(100)]


def simulate(strategy, oracle, workers: int):
    """A synchronous driver: each round asks for W plans and tells them all."""
    rounds = evaluations = 0
    while not strategy.done:
        plans = strategy.ask(workers)
        if not plans:
            raise AssertionError("strategy stalled: nothing to ask and not done")
        rounds += 1
        for keep in plans:
            evaluations += 1
            strategy.tell(keep, Verdict.PASS if oracle(keep) else Verdict.FAIL)
    return strategy.result(), evaluations, rounds


def needs_prefix(k):
    return lambda keep: all(f"l{i}" in keep for i in range(k))


@pytest.mark.parametrize("k", [1, 2, 37, 99, 100])
@pytest.mark.parametrize("workers", [1, 2, 4, 8])
def test_bisect_finds_smallest_prefix(k, workers):
    result, evaluations, rounds = simulate(Bisect(LAYERS), needs_prefix(k), workers)
    assert result.passed and result.keep == frozenset(LAYERS[:k])
    assert result.minimal == "contiguous-minimal"
    assert rounds <= math.ceil(math.log(len(LAYERS) + 1, workers + 1)) + 2


@pytest.mark.parametrize("workers", [1, 3])
def test_bisect_reverse_marks_a_suffix(workers):
    oracle = lambda keep: {"l97", "l98"} <= keep  # noqa: E731
    result, _, _ = simulate(Bisect(LAYERS, "reverse"), oracle, workers)
    assert result.keep == frozenset(LAYERS[97:])


def test_all_low_passing_ends_after_first_round():
    result, evaluations, rounds = simulate(Bisect(LAYERS), lambda keep: True, 2)
    assert result.passed and result.keep == frozenset() and rounds == 1 and evaluations == 2
    assert "all-low passes" in result.notes[0]


@pytest.mark.parametrize("cls", [Bisect, Linear])
def test_all_high_failing_is_said_plainly(cls):
    result, _, rounds = simulate(cls(LAYERS), lambda keep: False, 4)
    assert not result.passed and result.keep is None and rounds == 1
    assert "all-high fails" in result.notes[0]


@pytest.mark.parametrize("workers", [1, 4])
@pytest.mark.parametrize("k", [1, 10, 55])
def test_linear_finds_smallest_prefix_and_proves_it(k, workers):
    result, evaluations, _ = simulate(Linear(LAYERS), needs_prefix(k), workers)
    assert result.keep == frozenset(LAYERS[:k]) and result.minimal == "contiguous-minimal"
    # 0 and N first, then 1..k at least; never more than W-1 past the answer.
    assert k + 1 <= evaluations <= k + 1 + workers


def test_linear_no_longer_wants_larger_counts_once_one_passes():
    s = Linear(LAYERS)
    asked = s.ask(6)  # 0, N, 1, 2, 3, 4
    for keep in asked:
        if len(keep) in (0, 1):
            s.tell(keep, Verdict.FAIL)
    s.tell(frozenset(LAYERS[:2]), Verdict.PASS)
    assert not s.wanted(frozenset(LAYERS[:4]))
    assert s.done and s.result().keep == frozenset(LAYERS[:2])


@pytest.mark.parametrize("seed", range(20))
@pytest.mark.parametrize("name", ["bisect", "linear"])
def test_terminates_on_random_non_monotonic_oracles(seed, name):
    rng = random.Random(seed)
    table = {}

    def oracle(keep):
        if len(keep) == len(LAYERS):
            return True
        return table.setdefault(keep, rng.random() < 0.3)

    strategy = make_strategy(name, LAYERS)
    result, evaluations, _ = simulate(strategy, oracle, rng.choice([1, 2, 5]))
    assert result.passed
    assert evaluations <= len(LAYERS) + 1
    assert oracle(result.keep)
    # What it proves holds: the count before the answer failed.
    k = len(result.keep)
    if result.minimal == "contiguous-minimal" and k:
        assert not oracle(frozenset(LAYERS[: k - 1]))


def test_errors_count_as_not_passing_and_are_reported():
    s = Bisect(LAYERS)
    errors = set()
    while not s.done:
        for keep in s.ask(3):
            verdict = Verdict.PASS if len(keep) >= 40 else (
                Verdict.ERROR if len(keep) % 2 else Verdict.FAIL)
            if verdict is Verdict.ERROR:
                errors.add(len(keep))
            s.tell(keep, verdict)
    result = s.result()
    assert errors and result.keep == frozenset(LAYERS[:40])
    for k in errors:  # each error is named in the notes, as not passing
        assert f"k={k}: build or run error, counted as not passing" in result.notes


def test_non_monotonic_outcome_is_noted():
    # First round with 4 workers tests k = 0, 100, 33, 67: 33 passes but 67 fails.
    result, _, _ = simulate(Bisect(LAYERS), lambda keep: len(keep) in (33, 100), 4)
    assert any("non-monotonic" in n for n in result.notes)
    assert result.keep == frozenset(LAYERS[:33])


def test_telling_twice_or_unasked_raises():
    s = Bisect(LAYERS)
    keep = s.ask(1)[0]
    s.tell(keep, Verdict.FAIL)
    with pytest.raises(ValueError):
        s.tell(keep, Verdict.FAIL)
    with pytest.raises(ValueError):
        s.tell(frozenset({"l3"}), Verdict.PASS)


def test_unknown_strategy_and_direction():
    with pytest.raises(ValueError):
        make_strategy("annealing", LAYERS)
    with pytest.raises(ValueError):
        Bisect(LAYERS, "sideways")


@pytest.mark.parametrize("k", [1, 37, 100])
@pytest.mark.parametrize("workers", [2, 4])
def test_status_reports_the_round_running_and_its_points(k, workers):
    """The console shows status(): its round is the one the plans in flight belong to."""
    strategy, oracle, rounds = Bisect(LAYERS), needs_prefix(k), 0
    while not strategy.done:
        plans = strategy.ask(workers)
        rounds += 1
        status = strategy.status()
        assert status["round"] == rounds and status["points"] == len(plans)
        lo, hi = status["bounds"]
        if rounds > 1:  # later rounds split the open interval between the bounds
            assert all(lo < len(keep) < hi for keep in plans)
        for keep in plans:
            strategy.tell(keep, Verdict.PASS if oracle(keep) else Verdict.FAIL)


def test_the_lower_bound_is_the_largest_failure_below_the_best_count():
    """Non-monotonic: round 1 (W = 4) sees 0 fail, 33 pass, 67 fail, 100 pass. The next
    rounds search (0, 33), not give up because 67 > 33 failed: 20 is the answer, proved."""
    oracle = lambda keep: 20 <= len(keep) < 60 or len(keep) == 100  # noqa: E731
    result, _, rounds = simulate(Bisect(LAYERS), oracle, 4)
    assert result.keep == frozenset(LAYERS[:20]) and result.minimal == "contiguous-minimal"
    assert rounds == 3


def test_a_search_stopped_mid_round_answers_its_best_count_unproved():
    s = Bisect(LAYERS)
    assert s.status() == {"round": 0, "bounds": (-1, None), "points": 0}  # nothing asked
    for keep in s.ask(4):  # 0, 33, 67, 100
        s.tell(keep, Verdict.PASS if len(keep) >= 33 else Verdict.FAIL)
    s.ask(4)  # round 2 in flight: (0, 33) split, nothing told
    result = s.result()
    assert result.passed and result.keep == frozenset(LAYERS[:33]) and result.minimal == "none"
