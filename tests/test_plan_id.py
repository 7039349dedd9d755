"""A short plan id: the same keep-set gets the same id in log lines and history."""

from __future__ import annotations

from distprec.evaluator import Evaluation
from distprec.plan import plan_id
from distprec.strategies.base import Verdict


def test_a_plan_id_names_the_set_not_its_order():
    a = plan_id(["conv1", "relu2", "Conv@10"])
    assert a == plan_id(("Conv@10", "conv1", "relu2")) == plan_id(frozenset(
        {"relu2", "Conv@10", "conv1"}))
    assert len(a) == 8 and int(a, 16) >= 0
    assert a != plan_id(["conv1", "relu2"]) != plan_id([])


def test_history_entries_carry_the_plan_id():
    keep = frozenset({"x", "y"})
    assert Evaluation(keep, Verdict.PASS).record()["plan"] == plan_id(keep)
