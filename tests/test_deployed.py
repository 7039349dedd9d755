"""On the CPU emulation the answer is run as the deployed file too, and where that file
fails, the search goes on with it as the judge of that plan (oracles for both, no Ray)."""

from __future__ import annotations

from strategy_oracles import layers, needs

from distprec.actors.loop import LoopResult
from distprec.deployed import deployed_search
from distprec.evaluator import Evaluation
from distprec.strategies import make_strategy
from distprec.strategies.simulate import simulate

LAYERS = layers(30)
BAD = {"L0004", "L0017"}
FILE_BAD = BAD | {"L0025"}  # the deployed file also needs this one kept


def oracle_run(emulated, deployed, calls):
    def run(strategy, via, budget=None):
        way = via or "candidate"
        both = lambda k: emulated(k) and deployed(k)  # noqa: E731
        sim = simulate(strategy, both if way == "deployed" else emulated, 2)
        calls.append((way, [k for k, _ in sim.history]))
        return LoopResult([Evaluation(k, v, via=way) for k, v in sim.history],
                          rounds=sim.rounds, wall_s=float(len(sim.history)))
    return run


def _search(emulated, deployed):
    make = lambda: make_strategy("bisect+minimize", LAYERS)  # noqa: E731
    calls: list = []
    run = oracle_run(emulated, deployed, calls)
    first = make()
    loop = run(first, None)
    outcome, notes = deployed_search(make, run, first.result(), loop, tuple(LAYERS))
    return outcome, notes, loop, calls


def test_an_answer_the_deployed_file_fails_is_searched_on_judged_both_ways():
    outcome, notes, loop, calls = _search(needs(BAD), needs(FILE_BAD))
    assert outcome.keep == FILE_BAD and outcome.passed and outcome.minimal == "1-minimal"
    assert [way for way, _ in calls] == ["candidate", "deployed", "deployed"]
    assert calls[1][1] == [frozenset(BAD)]
    assert len(notes) == 1 and "failed as the file --save-model writes" in notes[0]
    # the emulation's failures are replayed, not judged again
    failed = {e.keep for e in loop.evaluations if e.via == "candidate" and not e.verdict.passed}
    assert not failed & set(calls[2][1])


def test_an_answer_the_file_passes_costs_one_run():
    outcome, notes, _, calls = _search(needs(BAD), needs(BAD))
    assert outcome.keep == BAD and notes == []
    assert [way for way, _ in calls] == ["candidate", "deployed"]


def test_the_saved_file_of_a_model_with_if_bodies_passes_polygraphy_on_onnxrt(ray_session,
                                                                             tmp_path):
    """Issue 25's bar: the --save-model file of a search on a model with If bodies passes
    `polygraphy run FILE --onnxrt` with the emitted inputs, golden outputs and tolerances
    (ONNX Runtime's CPU provider runs the file as Polygraphy's onnxrt runner does)."""
    import json
    import subprocess

    import onnx
    from control_flow_models import vad_like_feeds, vad_like_model

    from distprec.cli import main
    from distprec.exports import write_polygraphy_inputs

    onnx.save(vad_like_model(), tmp_path / "vad.onnx")
    write_polygraphy_inputs(tmp_path / "in.json", vad_like_feeds())
    tol = ["--atol", "5e-4", "--rtol", "5e-4"]
    assert main(["search", str(tmp_path / "vad.onnx"), "--device", "cpu", "--workers", "1",
                 "--inputs", str(tmp_path / "in.json"), "--no-live", "-o",
                 str(tmp_path / "r.json"), "--save-model", str(tmp_path / "mixed.onnx"),
                 *tol]) == 0
    result = json.loads((tmp_path / "r.json").read_text())
    answer = set(result["high_precision_layers"])
    assert result["searchable_layers"] > len(answer) > 0  # all-low fails, all-high is not it
    assert any(h["via"] == "deployed" and set(h["keep"]) == answer and h["passed"]
               for h in result["history"])
    run = subprocess.run(["polygraphy", "run", "mixed.onnx", "--onnxrt", "--load-inputs",
                          "r.inputs.json", "--load-outputs", "r.golden.json", *tol],
                         cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-2000:]
    assert "PASSED" in run.stdout + run.stderr


def test_a_file_the_cpu_provider_cannot_run_changes_nothing_and_says_so():
    """BF16 files: ONNX Runtime's CPU provider has no BF16 Tanh or Add, so the file errs;
    an error is no verdict on the plan (in CI the search then kept every layer)."""
    from distprec.strategies.base import Verdict

    calls: list = []
    emulated = needs(BAD)
    base = oracle_run(emulated, emulated, calls)

    def run(strategy, via, budget=None):
        loop = base(strategy, via, budget)
        if via == "deployed":
            for ev in loop.evaluations:
                ev.verdict, ev.reason = Verdict.ERROR, "NotImplemented: Tanh(13)"
        return loop

    make = lambda: make_strategy("bisect+minimize", LAYERS)  # noqa: E731
    first = make()
    loop = run(first, None)
    outcome, notes = deployed_search(make, run, first.result(), loop, tuple(LAYERS))
    assert outcome.keep == BAD and [w for w, _ in calls] == ["candidate", "deployed"]
    assert len(notes) == 1 and "does not run on ONNX Runtime's CPU provider" in notes[0]
    assert "Tanh(13)" in notes[0]
