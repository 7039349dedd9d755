"""Issue-6 benchmark on real GPUs (onnxruntime-gpu's CUDA provider, one Ray actor per GPU).

Parts (each writes <out>/<part>.json and prints markdown tables):
  agree    CUDA FP16 verdicts versus the CPU emulation, for the plans bisect visits
  scale    wall time, evaluations, rounds, speedup and efficiency for W = 1, 2, 4 ...
  peers    onnxconverter-common's auto_convert_mixed_precision versus distprec's FP16 search
  latency  latency of the mixed models each strategy found, against all-FP32 and all-FP16

Run on a GPU host:  python bench/gpu.py --parts agree,scale,peers,latency --out DIR
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
import ray  # noqa: E402

from distprec.candidates.backends import OrtBackend  # noqa: E402
from distprec.candidates.rewrites import mixed_model  # noqa: E402
from distprec.checks import CheckSpec  # noqa: E402
from distprec.demo import DEMO_CHECK, planted_mlp  # noqa: E402
from distprec.evaluator import Evaluator  # noqa: E402
from distprec.plan import Plan  # noqa: E402
from distprec.search import SearchConfig, prepare, run_search  # noqa: E402
from distprec.strategies import make_strategy  # noqa: E402

#: "cuda" on the GPU hosts; "cpu" (the emulation) only to smoke-test this script elsewhere.
DEVICE = os.environ.get("DISTPREC_BENCH_DEVICE", "cuda")
#: The shared models; DISTPREC_MODELS names a copy where ../shared does not travel.
MODELS = Path(os.environ.get("DISTPREC_MODELS") or
              Path(__file__).resolve().parents[1].parent / "shared" / "models")


def tol(atol: float, rtol: float, **kw) -> CheckSpec:
    return CheckSpec(atol=(("", atol),), rtol=(("", rtol),), **kw)


def cases(tmp: Path, blocks: int = 100) -> dict[str, tuple[str, str, CheckSpec, str | None]]:
    """name -> (model path, precision, check, inputs). Tolerances chosen so all-low fails."""
    demo = tmp / f"planted{blocks}.onnx"
    demo.write_bytes(planted_mlp(blocks=blocks).model.SerializeToString())
    candy_in = tmp / "candy_inputs.npz"  # candy takes pixel values 0..255
    rng = np.random.default_rng(0)
    np.savez(candy_in, inputImage=rng.uniform(0, 255, (1, 3, 720, 720)).astype(np.float32))
    return {
        "planted-fp16": (str(demo), "fp16", DEMO_CHECK, None),
        "ultraface-int8": (str(MODELS / "ultraface_rfb320.onnx"), "int8",
                           tol(10.0, 10.0, cosine_min=0.99999), None),
        "candy-fp16": (str(MODELS / "candy.onnx"), "fp16", tol(0.5, 0.005), str(candy_in)),
        "ultraface-fp16": (str(MODELS / "ultraface_rfb320.onnx"), "fp16", tol(1e-4, 1e-3),
                           None),
        "mnist-fp16": (str(MODELS / "mnist.onnx"), "fp16", tol(2e-4, 1e-3), None),
        "classifier-fp16": (str(MODELS / "image_classifier.onnx"), "fp16", tol(1e-3, 1e-3),
                            None),
    }


def local_bisect(evaluator: Evaluator, layers, workers: int = 4):
    """Visit the plans bisect visits, in this process (no Ray): for the agreement check."""
    strategy = make_strategy("bisect", layers)
    seen = {}
    while not strategy.done:
        for keep in strategy.ask(workers):
            seen[keep] = evaluator.evaluate(keep)
            strategy.tell(keep, seen[keep].verdict)
    return seen


def part_agree(tmp: Path) -> list[dict]:
    rows = []
    for name, (path, precision, check, inputs) in cases(tmp).items():
        if precision != "fp16":
            continue
        cfg = SearchConfig(model=path, precision=precision, check=check, samples=2,
                           inputs=inputs)
        prep = prepare(cfg)
        setup = prep.setup(cfg)
        gpu, emu = Evaluator(setup, OrtBackend(DEVICE)), Evaluator(setup, OrtBackend("cpu", 4))
        plans = set(local_bisect(gpu, prep.searchable)) | set(local_bisect(emu, prep.searchable))
        # Also the planted answer itself and each single removal from it, where known.
        disagreements = []
        agree = 0
        for keep in sorted(plans, key=len):
            g, e = gpu.evaluate(keep), emu.evaluate(keep)
            if g.verdict == e.verdict:
                agree += 1
            else:
                disagreements.append({"size": len(keep), "cuda": g.verdict.value,
                                      "emulated": e.verdict.value, "cuda_reason": g.reason,
                                      "emulated_reason": e.reason})
        rows.append({"case": name, "layers": len(prep.searchable), "plans": len(plans),
                     "agree": agree, "disagreements": disagreements})
        print(f"agree {name}: {agree}/{len(plans)}", flush=True)
    return rows


def run_one(cfg: SearchConfig, prep, workers: int) -> dict:
    cfg.workers = workers
    rep = run_search(cfg, prepared=prep)
    evs = rep.loop.evaluations
    med = statistics.median(e.end - e.start for e in evs)
    bound = max(rep.loop.rounds, len(evs) / workers) * med
    return {"W": workers, "evaluations": len(evs), "rounds": rep.loop.rounds,
            "search_s": rep.loop.wall_s, "median_eval_s": med, "bound_s": bound,
            "efficiency": bound / rep.loop.wall_s, "answer": len(rep.outcome.keep or ()),
            "answer_confirmed_s": rep.confirmation and rep.confirmation.answer_s,
            "passed": rep.outcome.passed, "minimal": rep.outcome.minimal,
            "keep": sorted(rep.outcome.keep or ())}


def part_scale(tmp: Path, widths: list[int], strategies: list[str], names: list[str],
               budget_s: float) -> list[dict]:
    rows = []
    t_end = time.time() + budget_s
    all_cases = cases(tmp, blocks=100)
    for name in names:
        path, precision, check, inputs = all_cases[name]
        for strategy in strategies:
            cfg = SearchConfig(model=path, precision=precision, strategy=strategy,
                               check=check, samples=2, device=DEVICE, inputs=inputs)
            prep = prepare(cfg)
            base = None
            for w in widths:
                if time.time() > t_end:
                    print(f"scale: time budget reached before {name} {strategy} W={w}")
                    return rows
                r = {"case": name, "strategy": cfg.strategy_name, "N": len(prep.searchable),
                     **run_one(cfg, prep, w)}
                base = base or r["search_s"]
                r["speedup"] = base / r["search_s"]
                rows.append(r)
                print(f"scale {name} {r['strategy']} W={w}: {r['search_s']:.2f}s "
                      f"evals={r['evaluations']} rounds={r['rounds']} "
                      f"speedup={r['speedup']:.2f} eff={r['efficiency']:.2f} "
                      f"answer={r['answer']} passed={r['passed']}", flush=True)
    return rows


ALLCLOSE = """import numpy as np
RTOL, ATOL = {rtol!r}, {atol!r}
def check(golden, outputs):
    ok = all(np.allclose(o[k], g[k], rtol=RTOL, atol=ATOL)
             for g, o in zip(golden, outputs) for k in g)
    return ok, 0.0
"""


PEER_CASES = {  # name -> (model, rtol, atol): np.allclose, the peer's own test
    "planted-fp16": (None, 0.03, 0.3),
    "ultraface-fp16": ("ultraface_rfb320.onnx", 1e-3, 1e-4),
    "candy-fp16": ("candy.onnx", 5e-3, 0.5),
}


def part_peers(tmp: Path, widths: list[int], strategies: list[str],
               names: list[str]) -> list[dict]:
    """Same model, same tolerance (np.allclose, as the peer checks), same GPU."""
    from onnxconverter_common.auto_mixed_precision_model_path import (
        auto_convert_mixed_precision_model_path,
    )

    rows = []
    provider = "CUDAExecutionProvider" if DEVICE == "cuda" else "CPUExecutionProvider"
    for name in names:
        file, rtol, atol = PEER_CASES[name]
        if file is None:
            path = tmp / "peer_planted.onnx"
            path.write_bytes(planted_mlp(blocks=100).model.SerializeToString())
        else:
            path = MODELS / file
        script = tmp / f"allclose_{name}.py"
        script.write_text(ALLCLOSE.format(rtol=rtol, atol=atol))
        inputs = cases(tmp)["candy-fp16"][3] if name == "candy-fp16" else None
        cfg = SearchConfig(model=str(path), precision="fp16", device=DEVICE, samples=1,
                           inputs=inputs, check=CheckSpec(atol=(("", 1e9),), rtol=(("", 1e9),),
                                                          check_func=f"{script}:check"))
        prep = prepare(cfg)
        # The peer fails on unnamed nodes and opset-7 models, so it also gets distprec's
        # prepared model (named nodes, opset 13): the same function, in a form it can take.
        prepared = tmp / f"prepared_{name}.onnx"
        prepared.write_bytes(prep.model.SerializeToString())
        evaluator = None
        for variant, source in (("original", path), ("prepared", prepared)):
            target = tmp / f"peer_{name}_{variant}.onnx"
            t0 = time.perf_counter()
            row = {"case": name, "tool": f"auto_convert_mixed_precision_model_path ({variant})",
                   "W": 1}
            try:
                auto_convert_mixed_precision_model_path(
                    str(source), prep.feeds[0], str(target), provider=[provider], rtol=rtol,
                    atol=atol, keep_io_types=True)
                import onnx

                peer = onnx.shape_inference.infer_shapes(onnx.load(str(target)))
                kept = frozenset(n.name for n in peer.graph.node
                                 if n.name in prep.searchable and _is_fp32_node(peer, n))
                row["time_s"] = time.perf_counter() - t0
                row.update(answer=len(kept), keep=sorted(kept))
                # Its FP32 layers exchange values through FP16 Casts: is its answer also one
                # under distprec's rewrite, where kept layers are FP32 end to end?
                evaluator = evaluator or Evaluator(prep.setup(cfg), OrtBackend(DEVICE))
                row["distprec_verdict"] = evaluator.evaluate(kept).verdict.value
            except Exception as exc:  # reported, not hidden
                row["error"] = str(exc).splitlines()[0][:160]
            row.setdefault("time_s", time.perf_counter() - t0)
            rows.append(row)
            print(f"peers: {row}", flush=True)
        for strategy in strategies:
            cfg.strategy = strategy
            for w in widths:
                t0 = time.perf_counter()
                r = run_one(cfg, prep, w)
                rows.append({"case": name, "tool": f"distprec {cfg.strategy_name}", "W": w,
                             "time_s": time.perf_counter() - t0, "answer": r["answer"],
                             "search_s": r["search_s"],
                             "answer_confirmed_s": r["answer_confirmed_s"],
                             "evaluations": r["evaluations"], "rounds": r["rounds"],
                             "keep": r["keep"]})
                print(f"peers: {rows[-1]}", flush=True)
    return rows


def _is_fp32_node(model, node) -> bool:
    """A node the peer left in FP32: the outputs it writes are FP32."""
    types = {vi.name: vi.type.tensor_type.elem_type
             for vi in (*model.graph.value_info, *model.graph.output)}
    return all(types.get(o) == 1 for o in node.output)


def part_latency(tmp: Path, scale_rows: list[dict]) -> list[dict]:
    rows = []
    all_cases = cases(tmp, blocks=100)
    for name, (path, precision, check, inputs) in all_cases.items():
        answers = {r["strategy"]: r["keep"] for r in scale_rows
                   if r["case"] == name and r["passed"]}
        if not answers:
            continue
        cfg = SearchConfig(model=path, precision=precision, check=check, samples=1,
                           inputs=inputs)
        prep = prepare(cfg)
        backend = OrtBackend(DEVICE, repeatable=False)  # as deployed: ORT's default kernels
        plans = {"all-fp32": None, f"all-{precision}": frozenset(),
                 **{s: frozenset(k) for s, k in answers.items()}}
        if precision == "fp16":  # the converter's all-FP16 model: is a slowdown ours?
            plans["all-fp16 (onnxconverter-common)"] = "converter"
        for label, keep in plans.items():
            if keep == "converter":
                from onnxconverter_common.float16 import convert_float_to_float16

                model = convert_float_to_float16(prep.model, keep_io_types=True)
            else:
                model = prep.model if keep is None else mixed_model(
                    prep.model, Plan(precision, keep), prep.searchable, emulate=False,
                    ranges_json=prep.ranges_json)
            session = backend.load(model)
            feed = prep.feeds[0]
            for _ in range(20):
                session.run(None, feed)
            times = []
            for _ in range(200):
                t0 = time.perf_counter()
                session.run(None, feed)
                times.append(time.perf_counter() - t0)
            rows.append({"case": name, "plan": label,
                         "kept": (len(prep.searchable) if keep is None else
                                  0 if keep == "converter" else len(keep)),
                         "median_ms": 1e3 * statistics.median(times)})
            print(f"latency {name} {label}: {rows[-1]['median_ms']:.3f} ms", flush=True)
    return rows


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--parts", default="agree,scale,peers,latency")
    ap.add_argument("--out", default=os.environ.get("OUT", "bench-out"))
    ap.add_argument("--widths", default="1,2,4")
    ap.add_argument("--strategies", default="bisect,sensitivity,auto")
    ap.add_argument("--cases", default="planted-fp16,ultraface-int8,candy-fp16")
    ap.add_argument("--budget", type=float, default=480.0, help="seconds for the scale part")
    ap.add_argument("--peer-strategies", default="auto")
    ap.add_argument("--peer-cases", default=",".join(PEER_CASES))
    ap.add_argument("--scale-from", action="append", default=[],
                    help="scale.json of an earlier call: its answers join the latency part")
    a = ap.parse_args()
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    widths = [int(w) for w in a.widths.split(",")]
    strategies = a.strategies.split(",")
    query = ["nvidia-smi", "--query-gpu=name,driver_version", "--format=csv,noheader"]
    try:
        gpus = subprocess.run(query, capture_output=True, text=True).stdout.strip().splitlines()
    except FileNotFoundError:
        gpus = []
    info = {"gpus": gpus, "python": platform.python_version(), "ray": ray.__version__,
            "date": time.strftime("%Y-%m-%d"), "argv": sys.argv}
    import onnxruntime

    info["onnxruntime"] = onnxruntime.__version__
    print(json.dumps(info), flush=True)
    ray.init(include_dashboard=False, log_to_driver=False, logging_level="ERROR")
    with tempfile.TemporaryDirectory() as tmpdir:
        tmp = Path(tmpdir)
        results: dict = {"info": info}

        def save(key: str) -> None:  # each part as soon as it is done: a killed run keeps it
            (out / f"{key}.json").write_text(json.dumps({"info": info, key: results[key]},
                                                        indent=1, default=str))

        if "agree" in a.parts:
            results["agree"] = part_agree(tmp)
            save("agree")
        if "scale" in a.parts:
            results["scale"] = part_scale(tmp, widths, strategies, a.cases.split(","), a.budget)
            save("scale")
        if "peers" in a.parts:
            results["peers"] = part_peers(tmp, [1, max(widths)], a.peer_strategies.split(","),
                                          a.peer_cases.split(","))
            save("peers")
        if "latency" in a.parts:
            rows = list(results.get("scale", []))
            for prev in a.scale_from:
                rows += json.loads(Path(prev).read_text())["scale"]
            results["latency"] = part_latency(tmp, rows)
            save("latency")


if __name__ == "__main__":
    main()
