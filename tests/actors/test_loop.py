"""drive() on real Ray actors whose verdicts come from an oracle: rounds, cancellation,
lost workers. The evaluator is replaced (not Ray): these tests are about the loop."""

from __future__ import annotations

import math
import os
import sys
import time

import pytest
import ray
from strategy_oracles import layers

from distprec.actors.loop import drive
from distprec.actors.pool import Worker
from distprec.errors import SearchError
from distprec.evaluator import Evaluation
from distprec.strategies import Minimize, Verdict
from distprec.strategies.prefix import Bisect
from distprec.strategies.sensitivity import SensitivityScan

LAYERS = layers(40)
PLANTED = frozenset({LAYERS[3], LAYERS[17], LAYERS[31]})
# Ray workers cannot import this test module (tests/ is not on their path): ship it by value.
ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])


@ray.remote(num_cpus=0, max_restarts=0)
class OracleActor:
    """Judges plans with ``needs(bad)``; ``delay`` s per plan so that work overlaps;
    ``die_after`` plans, the process exits (a lost worker)."""

    def __init__(self, bad, delay: float = 0.0, die_after: int | None = None) -> None:
        self.bad, self.delay, self.die_after, self.seen = frozenset(bad), delay, die_after, 0

    def _one(self, keep) -> Evaluation:
        self.seen += 1
        if self.die_after is not None and self.seen > self.die_after:
            os._exit(1)
        time.sleep(self.delay)
        verdict = Verdict.PASS if self.bad <= frozenset(keep) else Verdict.FAIL
        return Evaluation(frozenset(keep), verdict, worker="oracle")

    def ready(self) -> dict:  # the loop pings a lost worker's slot (max_restarts=0: never back)
        return {"worker": "oracle"}

    def evaluate(self, keep, profile: bool = False, via=None) -> Evaluation:
        return self._one(keep)

    def evaluate_many(self, keeps, via=None) -> list[Evaluation]:
        return [self._one(k) for k in keeps]


def _workers(n: int, **kw) -> list[Worker]:
    return [Worker(f"o{i}", OracleActor.remote(PLANTED, **kw)) for i in range(n)]


def test_rounds_count_dependent_evaluations(ray_session):
    loop = drive(Bisect(LAYERS), _workers(2))
    # Bisect with W=2 narrows by a factor 3 per round at best: it needs at least
    # log3(41) rounds after the two end plans; every plan's depth is at least 1.
    assert loop.rounds >= 1 + math.ceil(math.log(len(LAYERS) + 1, 3))
    assert loop.rounds < len(loop.evaluations)
    assert loop.rounds == max(loop.depth.values())
    assert min(loop.depth.values()) == 1
    assert {loop.depth[frozenset()], loop.depth[frozenset(LAYERS)]} == {1}


def test_unwanted_plans_are_cancelled_and_asked_again_only_when_wanted(ray_session):
    strategy = Minimize(LAYERS)
    loop = drive(strategy, _workers(3, delay=0.05))
    out = strategy.result()
    assert out.keep == PLANTED and out.minimal == "1-minimal"
    assert loop.cancelled > 0  # windows after a misprediction were dropped
    keeps = [e.keep for e in loop.evaluations]
    assert len(keeps) == len(set(keeps))  # nothing judged twice


def test_a_lost_worker_never_decides_a_verdict(ray_session):
    # "dies" exits on its second plan; that plan goes back and the live worker judges it.
    workers = _workers(1) + [Worker("dies", OracleActor.remote(PLANTED, die_after=1))]
    strategy = Bisect(LAYERS)
    loop = drive(strategy, workers)
    assert loop.lost_workers == ["dies"]
    assert all(e.verdict is not Verdict.ERROR for e in loop.evaluations)
    assert strategy.done and not loop.stalled
    assert strategy.result().passed and PLANTED <= strategy.result().keep


def test_every_worker_lost_raises_search_error(ray_session):
    workers = [Worker(f"d{i}", OracleActor.remote(PLANTED, die_after=0)) for i in range(2)]
    with pytest.raises(SearchError, match="every evaluator actor died"):
        drive(Minimize(LAYERS), workers)


class _ProfiledScan(SensitivityScan):
    """A scan whose all-low plan wants a profile: it runs alone, so a batch stops there."""

    def wants_profile(self, keep) -> bool:
        return keep == frozenset()


def test_plans_a_batch_could_not_take_are_sent_later_not_forgotten(ray_session):
    # Each worker takes 4 plans a call; the profiled plan runs alone, so of the 8 plans
    # asked, 6 are left over. The scan never asks a plan again once asked: forgetting
    # them (the old loop) stalled it.
    workers = [Worker(f"o{i}", OracleActor.remote(PLANTED), plans_per_run=4) for i in range(2)]
    strategy = _ProfiledScan(LAYERS)
    loop = drive(strategy, workers, via="switchboard")
    assert not loop.stalled and strategy.done
    assert len(loop.evaluations) == len(LAYERS) + 2
