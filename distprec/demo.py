"""Generated models with a known answer: planted layers that must stay in FP32.

The FP32 model is well behaved; a plant makes a value leave FP16's range and brings it
back, so exactly the plant's named layers must stay high:

- overflow: ``MatMul`` by a large weight (|value| > 65504) then a per-channel ``Mul``
  scaling it back. A vector scale, not a scalar, so that no runtime folds the Mul into
  the MatMul (ONNX Runtime's CUDA provider does fold scalar scales).
- underflow: ``Mul(a, a)`` of small values (subnormal in FP16) then ``Sqrt``.
Between plants, residual blocks MatMul -> Add -> Tanh -> Add keep values bounded.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from distprec.candidates.model import MAX_IR_VERSION
from distprec.checks import CheckSpec


@dataclass(frozen=True)
class PlantedModel:
    model: onnx.ModelProto
    planted: frozenset[str]  # the layers that must stay FP32
    plant_kinds: tuple[str, ...]


def planted_mlp(blocks: int = 60, width: int = 32, batch: int = 8,
                plants: tuple[tuple[float, str], ...] = ((0.12, "overflow"), (0.5, "underflow"),
                                                         (0.85, "overflow")),
                seed: int = 0) -> PlantedModel:
    """A residual MLP of ``4 * blocks`` (+ plants) searchable layers.

    ``plants`` are (relative position, kind) with kind "overflow" or "underflow".
    """
    rng = np.random.default_rng(seed)
    g = _Builder(rng)
    x = "input"
    where = {min(blocks - 1, int(pos * blocks)): kind for pos, kind in plants}
    planted: set[str] = set()
    for b in range(blocks):
        if b in where:
            x, names = (g.overflow if where[b] == "overflow" else g.underflow)(x, width, b)
            planted |= names
        h = g.node("MatMul", [x, g.weight((width, width), 1 / np.sqrt(width))], f"blk{b}/matmul")
        h = g.node("Add", [h, g.weight((width,), 0.1)], f"blk{b}/bias")
        h = g.node("Tanh", [h], f"blk{b}/tanh")
        x = g.node("Add", [x, h], f"blk{b}/residual")
    g.node("MatMul", [x, g.weight((width, 10), 1 / np.sqrt(width))], "head/matmul", out="logits")
    graph = helper.make_graph(
        g.nodes, "distprec_planted_mlp",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, [batch, width])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [batch, 10])],
        g.inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)],
                              producer_name="distprec.demo")
    model.ir_version = MAX_IR_VERSION
    onnx.checker.check_model(model)
    return PlantedModel(model, frozenset(planted), tuple(k for _, k in plants))


def planted_cnn(blocks: int = 8, channels: int = 8, size: int = 8, batch: int = 2,
                plants: tuple[tuple[float, str], ...] = ((0.3, "overflow"), (0.7, "underflow")),
                seed: int = 0) -> PlantedModel:
    """A residual CNN: blocks of Conv 3x3 -> Tanh -> Add, then pooling and a linear head.

    Overflow plant: a Conv with large weights (outputs ~1e5) and a per-channel Mul scaling
    back; underflow plant: the squares of small activations (~1e-8), then Sqrt.
    """
    rng = np.random.default_rng(seed)
    g = _Builder(rng)
    x = "input"
    where = {min(blocks - 1, int(pos * blocks)): kind for pos, kind in plants}
    planted: set[str] = set()
    fan_in = 9 * channels
    per_channel = (channels, 1, 1)
    for b in range(blocks):
        if where.get(b) == "overflow":
            p = g.node("Conv", [x, g.weight((channels, channels, 3, 3), 1e5 / np.sqrt(fan_in))],
                       f"plant{b}/overflow_conv", pads=[1, 1, 1, 1])
            q = g.node("Mul", [p, g.weight(per_channel, 1e-7, base=1e-5)], f"plant{b}/scale_back")
            x = g.node("Add", [x, q], f"plant{b}/residual")
            planted |= {f"plant{b}/overflow_conv", f"plant{b}/scale_back"}
        elif where.get(b) == "underflow":
            a = g.node("Mul", [x, g.weight(per_channel, 1e-6, base=1e-4)], f"plant{b}/shrink")
            sq = g.node("Mul", [a, a], f"plant{b}/square")
            r = g.node("Sqrt", [sq], f"plant{b}/sqrt")
            z = g.node("Mul", [r, g.weight(per_channel, 1.0, base=5e3)], f"plant{b}/grow")
            x = g.node("Add", [x, z], f"plant{b}/residual")
            planted |= {f"plant{b}/square", f"plant{b}/sqrt"}
        h = g.node("Conv", [x, g.weight((channels, channels, 3, 3), 1 / np.sqrt(fan_in)),
                            g.weight((channels,), 0.1)], f"blk{b}/conv", pads=[1, 1, 1, 1])
        h = g.node("Tanh", [h], f"blk{b}/tanh")
        x = g.node("Add", [x, h], f"blk{b}/residual")
    x = g.node("GlobalAveragePool", [x], "head/pool")
    x = g.node("Flatten", [x], "head/flatten")
    g.node("MatMul", [x, g.weight((channels, 10), 1 / np.sqrt(channels))], "head/matmul",
           out="logits")
    return _finish(g, "distprec_planted_cnn", [batch, channels, size, size], [batch, 10],
                   planted, plants)


def planted_attention(layers: int = 4, tokens: int = 8, dim: int = 16, batch: int = 2,
                      plants: tuple[tuple[float, str], ...] = ((0.25, "overflow"),
                                                               (0.75, "underflow")),
                      seed: int = 0) -> PlantedModel:
    """A small transformer-like stack: attention (QK^T, Softmax, AV) and a Tanh MLP.

    Overflow plant: attention scores of a layer whose queries are large (QK^T ~1e5, beyond
    FP16) scaled back per key position before the Softmax, as unscaled logits are.
    Underflow plant: an RMS norm of small activations, whose squares (~1e-8) and their
    mean underflow FP16 before the Sqrt.
    """
    rng = np.random.default_rng(seed)
    g = _Builder(rng)
    x = "input"
    where = {min(layers - 1, int(pos * layers)): kind for pos, kind in plants}
    planted: set[str] = set()
    s = 1 / np.sqrt(dim)
    for b in range(layers):
        big = where.get(b) == "overflow"
        # a plant's queries ~1e4 |x| and keys ~10 |x| still fit FP16; their products do not
        q = g.node("MatMul", [x, g.weight((dim, dim), (1e4 if big else 1.0) * s)], f"l{b}/q")
        k = g.node("MatMul", [x, g.weight((dim, dim), (10.0 if big else 1.0) * s)], f"l{b}/k")
        v = g.node("MatMul", [x, g.weight((dim, dim), s)], f"l{b}/v")
        kt = g.node("Transpose", [k], f"l{b}/kt", perm=[0, 2, 1])
        scores = g.node("MatMul", [q, kt], f"l{b}/scores")
        scale = g.weight((tokens,), 1e-7, base=2e-5) if big else g.weight((tokens,), 0.0, s)
        scaled = g.node("Mul", [scores, scale], f"l{b}/scale")
        if big:
            planted |= {f"l{b}/scores", f"l{b}/scale"}
        attn = g.node("Softmax", [scaled], f"l{b}/softmax", axis=-1)
        o = g.node("MatMul", [attn, v], f"l{b}/av")
        o = g.node("MatMul", [o, g.weight((dim, dim), s)], f"l{b}/proj")
        x = g.node("Add", [x, o], f"l{b}/attn_residual")
        if where.get(b) == "underflow":
            # a ~ 5e-5 |x| (FP16 subnormal, 1e-3 precision); a*a ~ 2e-9 rounds to 0 in FP16
            a = g.node("Mul", [x, g.weight((dim,), 1e-7, base=5e-5)], f"l{b}/shrink")
            sq = g.node("Mul", [a, a], f"l{b}/norm_square")
            ms = g.node("ReduceMean", [sq], f"l{b}/norm_mean", axes=[-1], keepdims=1)
            rms = g.node("Sqrt", [ms], f"l{b}/norm_sqrt")
            x = g.node("Div", [a, rms], f"l{b}/norm_div")
            planted |= {f"l{b}/norm_square", f"l{b}/norm_mean", f"l{b}/norm_sqrt"}
        h = g.node("MatMul", [x, g.weight((dim, 2 * dim), s)], f"l{b}/mlp_in")
        h = g.node("Tanh", [h], f"l{b}/mlp_tanh")
        h = g.node("MatMul", [h, g.weight((2 * dim, dim), 1 / np.sqrt(2 * dim))], f"l{b}/mlp_out")
        x = g.node("Add", [x, h], f"l{b}/mlp_residual")
    g.node("MatMul", [x, g.weight((dim, 10), s)], "head/matmul", out="logits")
    return _finish(g, "distprec_planted_attention", [batch, tokens, dim], [batch, tokens, 10],
                   planted, plants)


def planted_control_flow(width: int = 16, batch: int | str = 4, steps: int = 3,
                         seed: int = 0) -> PlantedModel:
    """A model whose computation runs in If, Loop and Scan bodies, with an FP16 overflow
    planted in the If's then-branch (a MatMul to ~1e5 and a per-channel Mul scaling back).

    main: ``stem/matmul`` -> ``gate`` If (its condition always holds)
    then: MatMul -> Add -> plant (its residual Add is the output); else: unnamed MatMul -> Relu
    -> ``refine`` Loop, ``steps`` times ``s + Tanh(s W + b)`` (weights inside the body)
    -> ``scan`` Scan over the batch rows, ``Relu(row W)`` per row and their running sum
    -> ``head/matmul``. Branch and Scan weights are outer-scope references to main-graph
    initializers, as exporters write them; the Loop's are the body's own. ``batch`` may
    be a name (a free batch axis).
    """
    rng = np.random.default_rng(seed)
    s = 1 / np.sqrt(width)
    g = _Builder(rng)
    h = g.node("MatMul", ["input", g.weight((width, width), s)], "stem/matmul")
    top = g.node("ReduceMax", ["input"], "gate/max", keepdims=0)
    cond = g.node("Greater", [top, g.weight((), 0.0, base=-1e30)], "gate/cond")
    row = [batch, width]

    then = g.body()
    t = then.node("MatMul", [h, g.weight((width, width), s)], "then/matmul")
    t = then.node("Add", [t, g.weight((width,), 0.1)], "then/bias")
    # no Relu after the plant: it would turn the overflow's -inf into 0 and hide it
    _, planted = then.overflow(t, width, 0, names=("then/overflow_matmul", "then/scale_back",
                                                    "then/residual"), out="gate/then_out")
    other = g.body()
    e = other.node("MatMul", [h, g.weight((width, width), s)], "", out="gate/else_mm")
    other.node("Relu", [e], "", out="gate/else_out")
    g.nodes.append(helper.make_node(
        "If", [cond], ["gated"], name="gate",
        then_branch=then.graph("then", [], [("gate/then_out", row)]),
        else_branch=other.graph("else", [], [("gate/else_out", row)])))

    loop = _Builder(rng)  # its own weights, inside the body
    loop.prefix = "refine/"
    loop.node("Identity", ["refine/cond_in"], "", out="refine/cond_out")
    m = loop.node("MatMul", ["refine/s", loop.weight((width, width), s)], "refine/matmul")
    m = loop.node("Add", [m, loop.weight((width,), 0.1)], "refine/bias")
    m = loop.node("Tanh", [m], "refine/tanh")
    loop.node("Add", ["refine/s", m], "refine/residual", out="refine/s_out")
    body = loop.graph("refine_body", [("refine/i", TensorProto.INT64, []),
                                      ("refine/cond_in", TensorProto.BOOL, []),
                                      ("refine/s", TensorProto.FLOAT, row)],
                      [("refine/cond_out", [], TensorProto.BOOL), ("refine/s_out", row)])
    g.inits += [numpy_helper.from_array(np.array(steps, np.int64), "refine/steps"),
                numpy_helper.from_array(np.array(True), "refine/go")]
    g.nodes.append(helper.make_node("Loop", ["refine/steps", "refine/go", "gated"], ["refined"],
                                    name="refine", body=body))

    scan = g.body()
    r = scan.node("MatMul", ["scan/row", g.weight((width, width), s)], "scan/matmul")
    scan.node("Relu", [r], "scan/relu", out="scan/row_out")
    scan.node("Add", ["scan/acc", "scan/row_out"], "scan/accumulate", out="scan/acc_out")
    body = scan.graph("scan_body", [("scan/acc", TensorProto.FLOAT, [width]),
                                    ("scan/row", TensorProto.FLOAT, [width])],
                      [("scan/acc_out", [width]), ("scan/row_out", [width])])
    g.inits.append(numpy_helper.from_array(np.zeros(width, np.float32), "scan/acc0"))
    g.nodes.append(helper.make_node("Scan", ["scan/acc0", "refined"], ["scan/sum", "scanned"],
                                    name="scan", body=body, num_scan_inputs=1))
    g.node("MatMul", ["scanned", g.weight((width, 10), s)], "head/matmul", out="logits")
    return _finish(g, "distprec_planted_control_flow", row, [batch, 10], planted,
                   ((0.0, "overflow"),))


def _finish(g: _Builder, name: str, in_shape: list[int], out_shape: list[int],
            planted: set[str], plants) -> PlantedModel:
    graph = helper.make_graph(
        g.nodes, name, [helper.make_tensor_value_info("input", TensorProto.FLOAT, in_shape)],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, out_shape)], g.inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)],
                              producer_name="distprec.demo")
    model.ir_version = MAX_IR_VERSION
    onnx.checker.check_model(model)
    return PlantedModel(model, frozenset(planted), tuple(k for _, k in plants))


class _Builder:
    def __init__(self, rng: np.random.Generator) -> None:
        self.rng, self.nodes, self.inits, self._n = rng, [], [], 0
        self.outer = False  # weights are the enclosing graph's
        self.prefix = ""  # of weight names: a body with weights of its own needs one

    def weight(self, shape, scale: float, base: float = 0.0) -> str:
        name = f"{self.prefix}w{len(self.inits)}"
        value = base + scale * self.rng.standard_normal(shape)
        self.inits.append(numpy_helper.from_array(value.astype(np.float32), name))
        return name

    def node(self, op: str, inputs: list[str], name: str, out: str | None = None,
             **attrs) -> str:
        out = out or f"{name}:0"
        self.nodes.append(helper.make_node(op, inputs, [out], name=name, **attrs))
        return out

    def body(self) -> _Builder:
        """A builder for a body whose weights are this graph's (outer-scope references)."""
        inner = _Builder(self.rng)
        inner.inits, inner.outer = self.inits, True
        return inner

    def graph(self, name: str, inputs, outputs) -> onnx.GraphProto:
        """This builder's nodes as a body: inputs (name, type, shape), outputs (name, shape
        [, type]); its weights only if they are its own."""
        own = [] if self.outer else self.inits
        return helper.make_graph(
            self.nodes, name, [helper.make_tensor_value_info(n, t, s) for n, t, s in inputs],
            [helper.make_tensor_value_info(o[0], o[2] if len(o) > 2 else TensorProto.FLOAT,
                                           o[1]) for o in outputs], own)

    def overflow(self, x: str, width: int, b: int, names: tuple[str, str, str] | None = None,
                 out: str | None = None) -> tuple[str, set[str]]:
        # Entries of p have std 8e4 * rms(x) with rms(x) >= 0.5: the largest of a batch is
        # well over 65504, while every weight (< 5e4) still fits in FP16.
        mm, back, res = names or (f"plant{b}/overflow_matmul", f"plant{b}/scale_back",
                                  f"plant{b}/residual")
        p = self.node("MatMul", [x, self.weight((width, width), 8e4 / np.sqrt(width))], mm)
        q = self.node("Mul", [p, self.weight((width,), 1e-7, base=8e-6)], back)
        x = self.node("Add", [x, q], res, out=out)
        return x, {mm, back}

    def underflow(self, x: str, width: int, b: int) -> tuple[str, set[str]]:
        # a ~ 1e-4 |x|, fine in FP16; a*a ~ 1e-8, below FP16's smallest subnormal (6e-8).
        a = self.node("Mul", [x, self.weight((width,), 1e-6, base=1e-4)], f"plant{b}/shrink")
        sq = self.node("Mul", [a, a], f"plant{b}/square")
        r = self.node("Sqrt", [sq], f"plant{b}/sqrt")
        z = self.node("Mul", [r, self.weight((width,), 1.0, base=5e3)], f"plant{b}/grow")
        x = self.node("Add", [x, z], f"plant{b}/residual")
        return x, {f"plant{b}/square", f"plant{b}/sqrt"}


#: The demo's check: FP16 rounding through 60 residual blocks leaves errors of ~0.1 on
#: outputs of ~20 (measured with the CPU emulation); a broken plant gives inf or errors > 1.
DEMO_ATOL, DEMO_RTOL = 0.3, 0.03
DEMO_CHECK = CheckSpec(atol=(("", DEMO_ATOL),), rtol=(("", DEMO_RTOL),))
MIN_BLOCKS = 8


def run_demo(out: str = "distprec-demo", workers: int | None = None,
             strategy: str = "bisect+minimize", blocks: int = 60, live: bool = True,
             report_path: str | None = None, top: int = 1) -> int:
    """Generate the planted model, search it on the local resources, compare with the plants."""
    from pathlib import Path

    from rich.console import Console
    from rich.table import Table

    from distprec.actors.pool import connect, placement
    from distprec.atomic import write_bytes, write_json
    from distprec.errors import InputError
    from distprec.raylog import RayLog
    from distprec.result import build_result
    from distprec.search import SearchConfig, resolve_device, run_search
    from distprec.view.console import SearchConsole

    if blocks < MIN_BLOCKS:
        raise InputError(f"--blocks must be at least {MIN_BLOCKS} (three plants in distinct "
                         f"blocks), got {blocks}")
    folder = Path(out)
    model_path = folder / "planted.onnx"
    cfg = SearchConfig(model=str(model_path), precision="fp16", strategy=strategy,
                       workers=workers, samples=4, top=top,
                       check=DEMO_CHECK)
    cfg.validate()
    with RayLog(folder / "demo.log") as ray_lines:
        connect()
        placement(resolve_device(cfg.device), workers)  # refuse before writing anything
        planted = planted_mlp(blocks=blocks)
        write_bytes(model_path, planted.model.SerializeToString())
        console = SearchConsole(cfg, live=live)
        ray_lines.notify = console.log
        with console:
            report = run_search(cfg, console.on_event)
    result = build_result(cfg, report)
    result["planted_layers"] = sorted(planted.planted)
    result["exports"] = [str(folder / "result.json")]
    if report_path:
        from distprec.view.report import write_report

        result["exports"] += [str(p) for p in write_report(result, report_path)]
    write_json(folder / "result.json", result)
    console.summary(result)
    found = set(result["high_precision_layers"])
    table = Table("layer", "planted", "found", title="found versus planted")
    for name in sorted(found | planted.planted,
                       key=lambda n: (n not in planted.planted, n))[:20]:
        table.add_row(name, "yes" if name in planted.planted else "",
                      "yes" if name in found else "")
    if len(found | planted.planted) > 20:
        table.add_row(f"... {len(found | planted.planted) - 20} more", "", "")
    Console().print(table)
    missing = planted.planted - found
    print(f"planted {len(planted.planted)}, found {len(found)}, planted and found "
          f"{len(planted.planted & found)}, extra {len(found - planted.planted)}"
          + (f", MISSED {sorted(missing)}" if missing else ""))
    return 0 if result["passed"] and not missing else 1
