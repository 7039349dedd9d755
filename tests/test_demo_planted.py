"""Generated models with planted layers: minimize finds exactly them (real verdicts, no Ray)."""

from __future__ import annotations

import pytest
from planted_helpers import PLANTS, make_evaluator

from distprec.demo import planted_attention, planted_cnn, planted_mlp
from distprec.strategies import make_strategy
from distprec.strategies.simulate import simulate

MODELS = {
    "mlp": lambda: planted_mlp(blocks=12, plants=PLANTS),
    "cnn": planted_cnn,  # a Conv overflow and an underflow
    "attention": planted_attention,  # QK^T overflow, an RMS-norm underflow
}


@pytest.mark.parametrize("kind", MODELS)
def test_bisect_then_minimize_returns_exactly_the_planted_layers(kind):
    planted = MODELS[kind]()
    assert {"overflow", "underflow"} <= set(planted.plant_kinds)
    ev = make_evaluator(planted.model)
    names = ev.setup.searchable
    memo = {}

    def oracle(keep):
        if keep not in memo:
            e = ev.evaluate(keep)
            memo[keep] = (e.verdict, e.figures)
        return memo[keep]

    bisect = simulate(make_strategy("bisect", names), oracle, 4)
    found = simulate(make_strategy("bisect+minimize", names), oracle, 4)
    assert found.outcome.keep == planted.planted
    assert found.outcome.minimal == "1-minimal"
    assert len(bisect.outcome.keep) > 2 * len(planted.planted)  # what a prefix search keeps
