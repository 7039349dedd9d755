"""Issue-11 INT8 figures: INT8 switchboard against real INT8 candidates, on the CPU.

Run:  python bench/int8_switchboard.py [--models mnist.onnx,ultraface_rfb320.onnx,planted_cnn]
For random plans (seeded): bit-equality and max |diff| of switchboard vs candidate outputs,
verdict agreement at cosine 0.99999 and 0.999 against the FP32 outputs, with ORT's graph
optimizations off on both sides (bit-equal by construction) and on (the candidate fuses
Q/DQ into QLinear kernels, which the switchboard's Where nodes prevent), and the cost per
plan: candidate (int8_candidate + session + run) and quantize_static against one
switchboard run. One intra-op thread.
"""

from __future__ import annotations

import argparse
import platform
import sys
import time
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from distprec.candidates.model import layer_table, prepare_model  # noqa: E402
from distprec.candidates.rewrites import calibrate, mixed_model, not_low, quantize_qdq  # noqa: E402
from distprec.candidates.switchboard import build_switchboard  # noqa: E402
from distprec.data import input_specs, random_feeds  # noqa: E402
from distprec.demo import planted_attention, planted_cnn, planted_mlp  # noqa: E402
from distprec.plan import Plan  # noqa: E402

MODELS = Path(__file__).resolve().parents[2] / "shared" / "models"
PLANTED = {"planted_cnn": lambda: planted_cnn(blocks=3).model,
           "planted_attention": lambda: planted_attention(layers=2).model,
           "planted_mlp": lambda: planted_mlp(blocks=10).model}
LEVELS = {"unfused": ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
          "fused": ort.GraphOptimizationLevel.ORT_ENABLE_ALL}


def session(model: onnx.ModelProto, level) -> ort.InferenceSession:
    so = ort.SessionOptions()
    so.graph_optimization_level, so.intra_op_num_threads = level, 1
    return ort.InferenceSession(model.SerializeToString(), so, providers=["CPUExecutionProvider"])


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a.ravel().astype(np.float64), b.ravel().astype(np.float64)
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b) + 1e-300))


def measure(name: str, plans: int) -> None:
    raw = PLANTED[name]() if name in PLANTED else onnx.load(str(MODELS / name))
    model = prepare_model(raw)
    feeds = random_feeds(input_specs(model), {}, seed=1, samples=2)
    ranges = calibrate(model, feeds)
    searchable = [x.name for x in layer_table(model, not_low(model, "int8")) if x.searchable]
    t = time.perf_counter()
    board = build_switchboard(model, searchable, "int8", emulate=False, ranges_json=ranges)
    build_s = time.perf_counter() - t
    rng = np.random.default_rng(0)
    keeps = [frozenset(), frozenset(searchable)] + [
        frozenset(x for x in searchable if rng.random() < p) for p in rng.uniform(.1, .9, plans)]
    names = {n.name for n in model.graph.node}
    for level_name, level in LEVELS.items():
        ref = session(model, level).run(None, feeds[0])
        board_session = session(board.model, level)
        equal = agree5 = agree3 = passes5 = 0
        worst, t_board, t_cand, t_qs = 0.0, [], [], []
        for keep in keeps:
            t = time.perf_counter()
            cand = mixed_model(model, Plan("int8", keep), searchable, emulate=False,
                               ranges_json=ranges)
            want = session(cand, level).run(None, feeds[0])
            t_cand.append(time.perf_counter() - t)
            if level_name == "fused" and len(t_qs) < 3:
                t = time.perf_counter()
                quantize_qdq(model, names - (set(searchable) - keep), ranges)
                t_qs.append(time.perf_counter() - t)
            feed = {**feeds[0], board.plan_input: board.mask(keep)}
            board_session.run(None, feed)
            t = time.perf_counter()
            got = board_session.run(None, feed)
            t_board.append(time.perf_counter() - t)
            equal += all(np.array_equal(a, b, equal_nan=True) for a, b in zip(got, want))
            worst = max(worst, *(float(np.max(np.abs(a - b))) if a.size else 0.0
                                 for a, b in zip(got, want)))
            for threshold, counter in ((0.99999, 5), (0.999, 3)):
                va = all(cosine(a, r) >= threshold for a, r in zip(got, ref))
                vb = all(cosine(b, r) >= threshold for b, r in zip(want, ref))
                if counter == 5:
                    agree5 += va == vb
                    passes5 += vb
                else:
                    agree3 += va == vb
        n = len(keeps)
        qs = f", quantize_static {np.median(t_qs) * 1e3:.0f} ms" if t_qs else ""
        print(f"{name} [{level_name}] {len(searchable)} layers, build {build_s:.2f} s: "
              f"bit-equal {equal}/{n}, max|diff| {worst:.3g}, verdicts agree "
              f"{agree5}/{n} at cos 0.99999 ({passes5} pass), {agree3}/{n} at 0.999; "
              f"switchboard run {np.median(t_board) * 1e3:.2f} ms, candidate "
              f"{np.median(t_cand) * 1e3:.1f} ms{qs}", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--models", default="mnist.onnx,ultraface_rfb320.onnx,planted_cnn,"
                    "planted_attention,planted_mlp")
    ap.add_argument("--plans", type=int, default=10)
    a = ap.parse_args()
    print(f"# {platform.processor() or platform.machine()}, onnxruntime {ort.__version__}")
    for name in a.models.split(","):
        measure(name, a.plans)


if __name__ == "__main__":
    main()
