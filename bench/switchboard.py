"""Issue-11 benchmark: an evaluation at the cost of an inference (the switchboard).

Parts (each writes <out>/<part>.json and prints one line per row):
  cost    per model: one FP32 inference; ms per plan as a candidate (rewrite + session +
          run) and through the switchboard (amortised over a batch of plans); verdict
          agreement on the same random plans; on CUDA the switchboard under each cuDNN
          conv search of --switch-conv, and with --heuristic-candidates the candidate path
          under HEURISTIC against DEFAULT (time and verdicts)
  fp32    one FP32 inference per model under each cuDNN conv search
  search  time to a confirmed answer of the same search, --evaluate candidate against
          auto (switchboard + confirmation on candidates), with answers and confirmation:
          auto's answer is confirmed when its own candidate passes; the candidates that
          back its 1-minimality follow (timed as confirm_s)

Run:  python bench/switchboard.py --parts cost,search --out DIR   (DISTPREC_BENCH_DEVICE=cpu
for the CPU emulation; default cuda)
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402

from distprec.candidates.backends import OrtBackend  # noqa: E402
from distprec.evaluation import choices as evaluator_module  # noqa: E402
from distprec.evaluator import Evaluator  # noqa: E402
from distprec.search import SearchConfig, prepare, run_search  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from gpu import DEVICE, MODELS, cases, tol  # noqa: E402

COST_CASES = {  # name -> (model file or None for the planted MLP, check)
    "planted100-fp16": None,
    "mnist-fp16": ("mnist.onnx", tol(2e-4, 1e-3)),
    "classifier-fp16": ("image_classifier.onnx", tol(1e-3, 1e-3)),
    "ultraface-fp16": ("ultraface_rfb320.onnx", tol(1e-4, 1e-3)),
    "candy-fp16": ("candy.onnx", tol(0.5, 0.005)),
    "layout-fp16": ("layout_cdla.onnx", tol(1e-2, 1e-2)),
}


def random_plans(layers, k: int, seed: int = 0) -> list[frozenset]:
    """``k`` plans keeping a random share (0 to 100 %) of the layers: mixed plans."""
    rng = np.random.default_rng(seed)
    plans = []
    for i in range(k):
        share = i / max(k - 1, 1)
        plans.append(frozenset(x for x in layers if rng.random() < share))
    return plans


def timed(fn, repeat: int, reduce=statistics.median) -> float:
    """Seconds of ``repeat`` calls after one warm-up call: their median, or ``reduce``."""
    fn()
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return reduce(times)


#: --forms: the Where form alone, the gated form forced, or the evaluator's timed choice
FORMS = {"where": ({"cpu": float("inf"), "cuda": float("inf")}, 0.0),
         "gated": ({}, float("inf")),
         "auto": (evaluator_module.IF_COST_S, evaluator_module.GATE_GAIN)}


def cost_case(name: str, path: str, check, inputs, plans_k: int, switch_searches: list[str],
              heuristic_candidates: bool, forms: list[str]) -> dict:
    cfg = SearchConfig(model=path, precision="fp16", check=check, samples=2, inputs=inputs,
                       device=DEVICE, evaluate="switchboard")
    prep = prepare(cfg)
    setup = prep.setup(cfg)
    backend = OrtBackend(DEVICE)
    # The baseline: one FP32 inference at its fastest. On CUDA, the faster of cuDNN's
    # HEURISTIC and EXHAUSTIVE searches (EXHAUSTIVE times the kernels; DEFAULT is slow
    # for FP32 convs, part fp32).
    infer = {}
    for search in ("HEURISTIC", "EXHAUSTIVE") if DEVICE == "cuda" else ("-",):
        fp32 = OrtBackend(DEVICE, conv_search=search).load(prep.model) if DEVICE == "cuda" \
            else backend.load(prep.model)
        infer[search] = timed(functools.partial(backend.run, fp32, setup.feeds), 20)
    infer_s = min(infer.values())
    plans = random_plans(prep.searchable, plans_k)
    cand_ev = Evaluator(setup, backend)
    cand, cand_t = [], []
    for keep in plans:
        t0 = time.perf_counter()
        cand.append(cand_ev.evaluate(keep, via="candidate"))
        cand_t.append(time.perf_counter() - t0)
    row = {"case": name, "layers": len(prep.searchable), "plans": len(plans),
           "fp32_infer_ms": infer_s * 1e3,
           "fp32_infer_ms_by_search": {k: v * 1e3 for k, v in infer.items()},
           "candidate_ms": statistics.median(cand_t) * 1e3,
           "switchboard": {}}
    # The switchboard under each cuDNN conv search (CUDA; the CPU has one way), per form.
    for search, form in [(s, f) for s in (switch_searches if DEVICE == "cuda" else ["-"])
                         for f in forms]:
        ev = Evaluator(setup, OrtBackend(DEVICE, **({} if search == "-" else
                                                     {"conv_search": search})))
        evaluator_module.IF_COST_S, evaluator_module.GATE_GAIN = FORMS[form]
        t0 = time.perf_counter()
        ev.warm_up()
        warm_s = time.perf_counter() - t0
        ev.evaluate_many(plans, via="switchboard")  # first runs (kernel choice) apart
        t0 = time.perf_counter()
        switch = ev.evaluate_many(plans, via="switchboard")
        switch_s = (time.perf_counter() - t0) / len(plans)
        single_s = timed(functools.partial(ev.evaluate_many, plans[:1], "switchboard"), 10)
        agree = sum(a.verdict == b.verdict for a, b in zip(cand, switch))
        row["switchboard"][f"{search}/{form}"] = {
            "plans_per_run": ev.plans_per_run, "note": ev.switch_note, "setup_s": warm_s,
            "ms_amortised": switch_s * 1e3, "ms_one_plan_alone": single_s * 1e3,
            "ratio_to_inference": switch_s / infer_s,
            "speedup": statistics.median(cand_t) / switch_s, "agree": agree,
            "verdicts": [[len(p), a.verdict.value, b.verdict.value]
                         for p, a, b in zip(plans, cand, switch)]}
        print(f"cost {name} [{search}/{form}]: N={row['layers']} fp32 {infer_s * 1e3:.2f} ms, "
              f"candidate {row['candidate_ms']:.1f} ms, switchboard {switch_s * 1e3:.2f} "
              f"ms/plan = {switch_s / infer_s:.1f}x inference (one plan alone "
              f"{single_s * 1e3:.2f} ms), agree {agree}/{len(plans)}, set-up {warm_s:.1f} s; "
              f"{ev.switch_note}", flush=True)
    if heuristic_candidates and DEVICE == "cuda":  # the candidate path under HEURISTIC
        heur = Evaluator(setup, OrtBackend(DEVICE, conv_search="HEURISTIC"))
        heur.warm_up()
        h, h_t = [], []
        for keep in plans:
            t0 = time.perf_counter()
            h.append(heur.evaluate(keep, via="candidate"))
            h_t.append(time.perf_counter() - t0)
        row["heuristic_candidate_ms"] = statistics.median(h_t) * 1e3
        row["heuristic_agrees_with_default"] = sum(
            a.verdict == b.verdict for a, b in zip(h, cand))
        print(f"cost {name}: HEURISTIC candidate {row['heuristic_candidate_ms']:.1f} ms, "
              f"agree {row['heuristic_agrees_with_default']}", flush=True)
    return row


def part_cost(tmp: Path, names: list[str], plans_k: int, switch_searches: list[str],
              heuristic_candidates: bool, forms: list[str]) -> list[dict]:
    planted = cases(tmp, blocks=100)["planted-fp16"]
    candy_inputs = cases(tmp)["candy-fp16"][3]
    rows = []
    for name in names:
        spec = COST_CASES[name]
        path, check = (planted[0], planted[2]) if spec is None else (str(MODELS / spec[0]),
                                                                      spec[1])
        try:
            rows.append(cost_case(name, path, check,
                                  candy_inputs if name == "candy-fp16" else None, plans_k,
                                  switch_searches, heuristic_candidates, forms))
        except Exception as exc:  # one model's failure must not lose the others' rows
            print(f"cost {name}: failed: {type(exc).__name__}: {exc}", flush=True)
            rows.append({"case": name, "error": f"{type(exc).__name__}: {exc}"})
    return rows


def part_fp32(tmp: Path, names: list[str]) -> list[dict]:
    """One FP32 inference per model under each cuDNN conv search: the baseline the
    switchboard's cost is held against, at its fastest (EXHAUSTIVE times the kernels)."""
    planted = cases(tmp, blocks=100)["planted-fp16"][0]
    candy_inputs = cases(tmp)["candy-fp16"][3]
    rows = []
    for name in names:
        spec = COST_CASES[name]
        path = planted if spec is None else str(MODELS / spec[0])
        cfg = SearchConfig(model=path, precision="fp16", samples=2, device=DEVICE,
                           inputs=candy_inputs if name == "candy-fp16" else None)
        prep = prepare(cfg)
        row = {"case": name}
        for search in ("DEFAULT", "HEURISTIC", "EXHAUSTIVE"):
            backend = OrtBackend(DEVICE, conv_search=search)
            session = backend.load(prep.model)
            run = functools.partial(backend.run, session, prep.feeds)
            row[f"fp32_{search}_ms"] = timed(run, 20) * 1e3
        rows.append(row)
        print(f"fp32 {row}", flush=True)
    return rows


def part_search(tmp: Path, names: list[str], per_gpu: int, modes: list[str],
                kernels: str) -> list[dict]:
    rows = []
    all_cases = cases(tmp, blocks=100)
    for name in names:
        path, precision, check, inputs = all_cases[name]
        for mode in modes:
            cfg = SearchConfig(model=path, precision=precision, check=check, samples=2,
                               inputs=inputs, device=DEVICE, evaluate=mode,
                               workers=per_gpu if DEVICE == "cuda" else 1,
                               workers_per_gpu=per_gpu, layer_errors="none",
                               conv_search=kernels)
            rep = run_search(cfg)
            conf = rep.confirmation.record() if rep.confirmation else None
            row = {"case": name, "evaluate": mode, "kernels": kernels, "W": cfg.workers,
                   "strategy": cfg.strategy_name, "wall_s": rep.wall_s,
                   "search_s": rep.loop.wall_s, "evaluations": len(rep.loop.evaluations),
                   "answer": len(rep.outcome.keep or ()), "passed": rep.outcome.passed,
                   "minimal": rep.outcome.minimal, "keep": sorted(rep.outcome.keep or ()),
                   "notes": rep.notes, "confirmation": conf}
            rows.append(row)
            print(f"search {name} {mode} W={cfg.workers}: wall {rep.wall_s:.2f} s, search "
                  f"{rep.loop.wall_s:.2f} s, evals {row['evaluations']}, answer {row['answer']} "
                  f"{row['minimal']} passed={row['passed']}"
                  + (f", answer confirmed at {conf['answer_confirmed_s']} s, confirm "
                     f"{conf['confirm_s']:.2f} s, candidates "
                     f"{conf['candidate_verdicts']}, disagreements {len(conf['disagreements'])}"
                     if conf else "") + f"; {rep.notes}", flush=True)
    return rows


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--parts", default="cost,search")
    ap.add_argument("--out", default=os.environ.get("OUT", "bench-out"))
    ap.add_argument("--cost-cases", default=",".join(COST_CASES))
    ap.add_argument("--plans", type=int, default=12, help="random plans per model (cost)")
    ap.add_argument("--switch-conv", default="DEFAULT,HEURISTIC",
                    help="cuDNN conv searches to time the switchboard under (cost, CUDA)")
    ap.add_argument("--forms", default="auto",
                    help="switchboard forms to time (cost): where, gated, auto")
    ap.add_argument("--heuristic-candidates", action="store_true",
                    help="also time candidates under HEURISTIC (cost, CUDA)")
    ap.add_argument("--search-cases", default="planted-fp16,candy-fp16,ultraface-int8")
    ap.add_argument("--workers-per-gpu", type=int, default=1)
    ap.add_argument("--modes", default="candidate,auto", help="--evaluate modes (search)")
    ap.add_argument("--conv-search", default="EXHAUSTIVE", help="the kernel contract (search)")
    a = ap.parse_args()
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    meta = {"device": DEVICE, "python": platform.python_version(), "host": platform.node()}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        parts = a.parts.split(",")
        if "cost" in parts:
            rows = part_cost(tmp, a.cost_cases.split(","), a.plans, a.switch_conv.split(","),
                             a.heuristic_candidates, a.forms.split(","))
            (out / "cost.json").write_text(json.dumps({**meta, "rows": rows}, indent=1))
        if "fp32" in parts:
            rows = part_fp32(tmp, a.cost_cases.split(","))
            (out / "fp32.json").write_text(json.dumps({**meta, "rows": rows}, indent=1))
        if "search" in parts:
            rows = part_search(tmp, a.search_cases.split(","), a.workers_per_gpu,
                               a.modes.split(","), a.conv_search)
            (out / "search.json").write_text(json.dumps({**meta, "rows": rows}, indent=1))


if __name__ == "__main__":
    main()
