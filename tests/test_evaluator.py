"""The real evaluator: a candidate that does not build is an ERROR verdict, not a crash."""

from __future__ import annotations

import dataclasses

from planted_helpers import make_evaluator

from distprec.demo import planted_mlp
from distprec.strategies import Verdict


def test_a_candidate_that_fails_to_build_is_an_error_verdict():
    ev = make_evaluator(planted_mlp(blocks=2).model, precision="int8")
    good = ev.evaluate(frozenset(), via="candidate")
    assert good.verdict is not Verdict.ERROR and not good.reason.startswith("KeyError")
    # A calibration table without its method: the INT8 rewrite cannot build the candidate.
    ev.setup = dataclasses.replace(ev.setup, ranges_json='{"broken": 1}')
    bad = ev.evaluate(frozenset(), via="candidate")
    assert bad.verdict is Verdict.ERROR and bad.reason == "KeyError: 'calibration_method'"
    assert bad.end >= bad.start > 0 and bad.via == "candidate"
    assert ev.evaluate_many([frozenset()], via="candidate")[0].verdict is Verdict.ERROR
