"""--objective latency end to end: the fastest passing plan timed, its front, and every
front point passing when checked by the user (real Ray actors, real sessions)."""

from __future__ import annotations

import json

from test_cli import TOL

from distprec.cli import main
from distprec.fastest import Fastest, layer_edges, tied
from distprec.front import Point, dominates


def test_the_latency_answer_is_the_fastest_passing_plan_and_its_front_checks(
        ray_session, small_planted, small_planted_path, tmp_path, capsys):
    out = tmp_path / "result.json"
    code = main(["search", str(small_planted_path), "--device", "cpu", "--workers", "2",
                 "--samples", "2", "--objective", "latency", "--no-live", "-o", str(out), *TOL])
    assert code == 0
    printed = capsys.readouterr().out
    result = json.loads(out.read_text())
    lat = result["latency"]
    assert result["objective"] == "latency" and result["passed"]
    assert small_planted.planted <= set(result["fewest_layers"])
    assert lat["fp32"]["median_s"] > 0 and lat["fp32"]["casts"] == 0
    assert lat["all_low"]["passed"] is False and lat["all_low"]["median_s"] > 0
    timed = [h for h in result["history"] if h["via"] == "timed"]
    assert len(timed) == lat["timed"] + 1 >= 4  # the answer a second time, last
    assert all(h["latency"]["runs"] >= 15 for h in timed)
    passing = [h for h in timed if h["passed"]]
    fastest = min(passing, key=lambda h: h["latency"]["median_s"])["latency"]
    answer = lat["answer"]
    assert sorted(answer["keep"]) == sorted(result["high_precision_layers"])
    assert tied(answer["latency_s"], answer["spread"], fastest["median_s"], fastest["spread"])
    front = [Point(frozenset(p["keep"]), p["error"], p["latency_s"], p["spread"], p["casts"])
             for p in lat["front"]]
    assert front and not any(dominates(a, b) for a in front for b in front)
    again = lat["retimed"]  # the answer timed once more, last: its own repeatability
    assert again["plan"] == answer["plan"] and again["first_s"] == answer["latency_s"]
    assert again["again_s"] > 0 and 0 <= again["difference"] < 10
    assert "timed again last" in printed
    assert "accuracy-latency front" in printed
    if not lat["beats_fp32"]:
        assert any("no passing plan beats FP32" in n for n in result["notes"])
    args = ["check", str(small_planted_path), "--device", "cpu", "--samples", "2", *TOL,
            "--keep-file", str(out)]
    for k in range(len(front)):  # the user's own check of every point of the front
        assert main([*args, "--front-point", str(k)]) == 0, k
    assert main([*args, "--front-point", str(len(front))]) == 2
    assert f"has points 0 to {len(front) - 1}" in capsys.readouterr().err
    # the report reads this result.json as written and draws its front
    assert main(["report", str(out), "-o", str(tmp_path / "r.html")]) == 0
    assert (tmp_path / "r-latency-front.png").stat().st_size > 1000


def test_layer_edges_pass_through_nodes_that_are_not_searchable(small_planted):
    from distprec.candidates.model import prepare_model

    model = prepare_model(small_planted.model)
    names = {n.name for n in model.graph.node}
    searchable = tuple(sorted(n.name for n in model.graph.node if n.op_type == "MatMul"))
    edges = layer_edges(model, searchable)
    assert edges and all(a in searchable and b in searchable for a, b in edges)
    assert len(names) > len(searchable)  # there were nodes in between to pass through


def test_a_sweep_table_gives_each_kinds_latency_against_its_own_fp32():
    from rich.console import Console

    from distprec.sweep import table

    def run(device, latency):
        return {"device": device, "precision": "fp16", "status": "done", "passed": True,
                "high_precision_layers": ["a"], "evaluations": 9, "wall_s": 1.0,
                "result": {"latency": latency}}

    doc = {"model": "m.onnx", "runs": [
        run("nano", {"answer": {"latency_s": 0.006}, "fp32": {"median_s": 0.012}}),
        run("xavier", {"answer": {"latency_s": 0.003}, "fp32": {"median_s": 0.002}})]}
    console = Console(width=80, record=True)
    console.print(table(doc))
    text = console.export_text()
    assert "0.50x FP32" in text and "1.50x FP32" in text
    assert "6 ms" in text and "3 ms" in text


def _timed(keep: str, ms: float, spread: float = 0.0, passed: bool = True):
    from distprec.evaluation.base import Evaluation
    from distprec.strategies.base import Verdict

    return Evaluation(frozenset(keep), Verdict.PASS if passed else Verdict.FAIL,
                      figures={"y": {"rel_l2": 1e-3 / (1 + len(keep))}}, via="timed",
                      latency={"median_s": ms / 1e3, "spread": spread, "runs": 20, "casts": 2})


def test_the_fewest_layers_win_a_tie_and_fp32_is_beaten_only_beyond_the_noise():
    fp32 = {"median_s": 2e-3, "spread": 0.01, "runs": 20, "casts": 0}
    found = Fastest("cpu", fp32, [_timed("ab", 1.00), _timed("abcd", 0.99), _timed("", 0.5,
                                                                                    passed=False)])
    assert found.answer.keep == frozenset("ab")  # 1 % slower than the fastest: a tie
    assert found.beats_fp32 and found.all_low.latency["median_s"] == 0.5e-3
    assert Fastest("cpu", fp32, [_timed("ab", 1.00), _timed("abcd", 0.90)]).answer.keep \
        == frozenset("abcd")  # 10 % faster: no tie
    noisy = Fastest("cpu", {**fp32, "median_s": 1.05e-3}, [_timed("abc", 1.0, spread=0.2)])
    assert not noisy.beats_fp32  # 5 % faster, with runs spread over 20 %: no clear win
