"""The switchboard: every plan of a search as an input of one prebuilt model.

A candidate costs a graph rewrite and a new session per plan (20 ms to 2.3 s measured on
an H200), while the run that decides its verdict costs 1 to 48 ms. The switchboard computes
every searchable layer twice, a high (FP32) branch and a low branch, and
``Where(keep[i], high, low)`` picks the value that flows on, so one session serves every plan
and an evaluation is one ``session.run`` with the plan as an input.

The low branch is the candidate's lowered layer, value for value:
- real low-precision kernels (CUDA): float inputs Cast to FP16/BF16 (weights converted
  once, as initializers), the layer computes in low precision, its outputs are Cast back.
  A value one lowered layer hands the next makes an FP16 -> FP32 -> FP16 round trip here and
  none in the candidate; FP16 and BF16 values survive it exactly.
- the CPU emulation: the graph stays FP32 and values are rounded where they enter and leave
  the layer, with the Cast pairs of ``rewrites.emulate_low_precision``.
- INT8: Q/DQ where quantize_static would put them (``distprec.candidates.qdq``), switched
  per tensor rather than per layer, since quantize_static quantizes a tensor once for all
  its consumers; unfused, switchboard and INT8 candidate are bit-identical.

The gated form (``gated=True``, one plan per run): each searchable layer becomes an ``If``
whose branches are its high and its low copy, so a run computes each layer once, in the
precision its plan gives it, where the Where form computes it twice and adds a Cast pair
and a Where per layer on full-size activations. Which costs less depends on the runtime:
on 2 CPU cores the gated form halved ultraface's and candy's cost, on an H200 candy's (a
Where form replayed as one CUDA graph won everywhere else); so the evaluator times both
forms and keeps the cheaper. Each layer's bit is a scalar BOOL input of its own
(``gate_input``): ONNX Runtime reads an If's condition on the host, and a bit sliced from
one plan tensor on the GPU would be copied back layer by layer. Layers inside bodies and
INT8 keep the Where form.

What the switchboard cannot reproduce are runtime fusions across layer boundaries: a Where
between two layers stops the runtime fusing them, where the candidate may fuse them (for
example Conv+Relu or MatMul+Mul). So a switchboard verdict guides the search and the answer
is always confirmed on real candidates (distprec/confirm.py).

Plan input (``PLAN_INPUT``, INT32, 1 = kept FP32): shape [N] with one column per searchable
layer, or [B, N] in the batched form, one row per row of the stacked feeds, so that one run
evaluates P plans x S samples where every tensor the switch touches has the batch axis first.
The batched form declares the leading axis of every input and output free, even where the
model fixes it (most exports fix batch 1): the evaluator uses it only where a stacked run
agrees with single runs, which a model that mixes or reshapes rows fails.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from distprec.candidates.model import MAX_IR_VERSION, _copy, _opset, float_tensors
from distprec.candidates.rewrites import LOW_TYPES, WeightCopies, _data_slots, _round_trip
from distprec.candidates.subgraphs import bodies, walk

PLAN_INPUT = "distprec_keep"
ROWS = "distprec_rows"  # the batched form's leading axis: P plans x the samples' rows


@dataclass(frozen=True)
class Switchboard:
    """One model that evaluates any plan of a search: ``model`` with the plan as an input."""

    model: onnx.ModelProto
    columns: tuple[str, ...]  # searchable layers, in the order of the plan input's columns
    batched: bool = False  # plan input [B, N] (one row per feed row) instead of [N]
    plan_input: str = PLAN_INPUT
    gated: bool = False  # one If per layer, its bit a scalar input (gate_input)

    def mask(self, keep: Iterable[str]) -> np.ndarray:
        keep = set(keep)
        return np.fromiter((name in keep for name in self.columns), np.int32,
                           len(self.columns))

    def feed(self, keep: Iterable[str]) -> dict[str, np.ndarray]:
        """The plan's inputs of a one-plan run: the mask, or the gated form's bits."""
        bits = self.mask(keep)
        if self.gated:
            return {gate_input(i): np.array(bool(b)) for i, b in enumerate(bits)}
        return {self.plan_input: bits}


def gate_input(column: int) -> str:
    """The gated form's input holding one layer's bit (True: kept FP32)."""
    return f"{PLAN_INPUT}/{column}"


def build_switchboard(model: onnx.ModelProto, searchable: Sequence[str], precision: str, *,
                      emulate: bool, ranges_json: str | None = None,
                      batched: bool = False, gated: bool = False) -> Switchboard:
    """The switchboard of ``model`` for a search over ``searchable`` in ``precision``.

    ``model`` is the prepared model (distprec.candidates.model.prepare_model). Raises
    ValueError when the batched form is asked for and a switched tensor's rank is unknown,
    and when the gated form is asked for INT8, with ``batched``, or for a body layer.
    """
    columns = tuple(searchable)
    if gated:
        if batched or precision == "int8":
            raise ValueError("the gated switchboard takes one FP16/BF16 plan per run")
        return Switchboard(_gated_switch(model, columns, LOW_TYPES[precision], emulate),
                           columns, gated=True)
    if precision == "int8":
        if batched:
            raise ValueError("the INT8 switchboard takes one plan per run")
        if ranges_json is None:
            raise ValueError("the INT8 switchboard needs calibration ranges")
        from distprec.candidates.qdq import int8_switchboard

        return Switchboard(int8_switchboard(model, columns, ranges_json), columns)
    switched = _float_switch(model, columns, LOW_TYPES[precision], emulate, batched)
    return Switchboard(switched, columns, batched)


def _float_switch(model: onnx.ModelProto, columns: tuple[str, ...], dtype: int,
                  emulate: bool, batched: bool) -> onnx.ModelProto:
    """FP16/BF16: a high and a low branch per searchable layer, a Where per float output.

    Layers inside If/Loop/Scan bodies are switched inside their body: the plan input is a
    main-graph value, which every body sees as an outer-scope reference. Their low branch
    is the candidate's (rewrites._Lowering), Casts inside the body included.
    """
    model = _copy(model)
    graph = model.graph
    col = {name: i for i, name in enumerate(columns)}
    if batched:
        # a body's tensors need not keep the batch axis first (Scan slices along it)
        _refuse_body_layers(graph, col, "the batched switchboard cannot switch it per row")
    keep_bool = f"{PLAN_INPUT}/bool"
    board = _Board(model, col, dtype, emulate, batched, keep_bool)
    board.graph(graph, {})
    graph.node.insert(0, helper.make_node("Cast", [PLAN_INPUT], [keep_bool], to=TensorProto.BOOL,
                                          name=keep_bool))
    shape = [ROWS, len(columns)] if batched else [len(columns)]
    if batched:
        _free_leading_axis(graph)
    graph.input.append(helper.make_tensor_value_info(PLAN_INPUT, TensorProto.INT32, shape))
    model.ir_version = min(model.ir_version, MAX_IR_VERSION)
    return model


def _gated_switch(model: onnx.ModelProto, columns: tuple[str, ...], dtype: int,
                  emulate: bool) -> onnx.ModelProto:
    """FP16/BF16: each searchable layer an If on its own bit, its high copy one branch and
    its low copy (Casts inside) the other."""
    model = _copy(model)
    graph = model.graph
    col = {name: i for i, name in enumerate(columns)}
    _refuse_body_layers(graph, col, "the gated switchboard switches main-graph layers only")
    board = _Board(model, col, dtype, emulate, False, "")
    nodes = [board.gate(node) if node.name in col else node for node in graph.node]
    del graph.node[:]
    graph.node.extend(nodes)
    graph.input.extend(helper.make_tensor_value_info(gate_input(i), TensorProto.BOOL, [])
                       for i in range(len(columns)))
    model.ir_version = min(model.ir_version, MAX_IR_VERSION)
    return model


def _refuse_body_layers(graph: onnx.GraphProto, col: dict[str, int], why: str) -> None:
    """ValueError naming the first switched layer that sits inside an If/Loop/Scan body."""
    inside = next((p.node.name for p in walk(graph) if p.parent and p.node.name in col), None)
    if inside is not None:
        raise ValueError(f"layer {inside!r} is inside an If/Loop/Scan body: {why}")


class _Board:
    """Builds the switch of each searchable layer of one model, graph by graph."""

    def __init__(self, model: onnx.ModelProto, col: dict[str, int], dtype: int, emulate: bool,
                 batched: bool, keep_bool: str) -> None:
        self.main, self.col, self.dtype, self.emulate = model.graph, col, dtype, emulate
        self.batched, self.keep_bool = batched, keep_bool
        self.opset, self.floats = _opset(model), float_tensors(model)
        self.ranks = _ranks(model) if batched else {}
        self.tag = "bf16" if dtype == TensorProto.BFLOAT16 else "fp16"
        self.copies = WeightCopies(model, dtype, emulate)
        self.types = {vi.name: vi.type.tensor_type.elem_type
                      for vi in (*model.graph.value_info, *model.graph.output)}

    def graph(self, graph: onnx.GraphProto, low_value: dict[str, str]) -> None:
        """Switch ``graph``'s layers and its bodies'; ``low_value`` maps an FP32 tensor to
        what low branches read (a body starts from a copy of its parent scope's)."""
        nodes: list[onnx.NodeProto] = []
        for node in list(graph.node):
            if node.name in self.col:
                nodes += self.switch(node, nodes, low_value)
            else:
                for _, sub in bodies(node):
                    self.graph(sub, dict(low_value))
                nodes.append(node)
        del graph.node[:]
        graph.node.extend(nodes)

    def low_input(self, x: str, nodes: list[onnx.NodeProto], low_value: dict[str, str]) -> str:
        """The low branch's view of FP32 tensor ``x``: Cast to low (or rounded), once a scope."""
        if x not in low_value:
            suffix = f"{self.tag}_in"
            if x in self.copies:  # weights: converted once, here, not at run time
                low_value[x] = self.copies.weight(x, suffix)
            else:
                low_value[x] = name = self.copies.fresh(f"{x}/{suffix}")
                nodes.extend(_round_trip(x, name, self.dtype) if self.emulate else [
                    helper.make_node("Cast", [x], [name], to=self.dtype, name=f"{name}/cast")])
        return low_value[x]

    def low_copy(self, node: onnx.NodeProto, nodes: list[onnx.NodeProto],
                 low_value: dict[str, str]) -> tuple[onnx.NodeProto, list[int]]:
        """``node``'s low copy reading low inputs (their Casts go to ``nodes``), and the
        positions of its data outputs."""
        ins, outs = _data_slots(node, self.opset)
        low = onnx.NodeProto()
        low.CopyFrom(node)
        low.name = f"{node.name}/low"
        for k in ins:
            if node.input[k] in self.floats:
                low.input[k] = self.low_input(node.input[k], nodes, low_value)
        return low, outs

    def cast_back(self, raw: str, lowered: str) -> list[onnx.NodeProto]:
        """A low output made FP32 again: Cast back, or the emulation's rounding."""
        if self.emulate:
            return _round_trip(raw, lowered, self.dtype)
        return [helper.make_node("Cast", [raw], [lowered], to=TensorProto.FLOAT,
                                 name=f"{lowered}/cast")]

    def switch(self, node: onnx.NodeProto, nodes: list[onnx.NodeProto],
               low_value: dict[str, str]) -> list[onnx.NodeProto]:
        """``node`` as a high copy, a low copy and a Where per float output."""
        low, outs = self.low_copy(node, nodes, low_value)
        selects: list[onnx.NodeProto] = []
        condition = None
        fresh = self.copies.fresh
        for j, y in enumerate(node.output):
            if not y:
                continue
            if j not in outs or y not in self.floats:
                low.output[j] = fresh(f"{y}/low_unused")  # index outputs: high branch's
                continue
            if condition is None:
                condition, made = _condition(self.keep_bool, self.col[node.name],
                                             self.ranks.get(y), node.name, self.main,
                                             self.batched)
                selects += made
            high, raw, lowered = fresh(f"{y}/high"), fresh(f"{y}/{self.tag}"), fresh(f"{y}/low")
            node.output[j], low.output[j] = high, raw
            selects += self.cast_back(raw, lowered)
            selects.append(helper.make_node("Where", [condition, high, lowered], [y],
                                            name=f"{y}/switch"))
        if condition is None:
            raise ValueError(f"layer {node.name!r} has no floating-point output to switch")
        return [node, low, *selects]


    def gate(self, node: onnx.NodeProto) -> onnx.NodeProto:
        """``node`` as an If on its column's bit: then its high copy, else its low copy.

        Every output comes from the branch that ran, as in the candidate (the Where form
        takes index outputs from the high branch); float data outputs are Cast back (or
        rounded), and the low branch's Casts of activations run only when it does.
        """
        fresh = self.copies.fresh
        before: list[onnx.NodeProto] = []  # the low branch's Casts: run only when it does
        after: list[onnx.NodeProto] = []
        low, outs = self.low_copy(node, before, {})
        high = onnx.NodeProto()
        high.CopyFrom(node)
        high.name = f"{node.name}/high"
        high_out, low_out = [], []
        for j, y in enumerate(node.output):
            if not y:
                continue
            elem = TensorProto.FLOAT if y in self.floats else self.types.get(y)
            if not elem:
                raise ValueError(f"layer {node.name!r}: type of output {y!r} unknown")
            high.output[j] = fresh(f"{y}/high")
            high_out.append(helper.make_tensor_value_info(high.output[j], elem, None))
            if j in outs and y in self.floats:
                low.output[j], back = fresh(f"{y}/{self.tag}"), fresh(f"{y}/low")
                after += self.cast_back(low.output[j], back)
            else:
                low.output[j] = back = fresh(f"{y}/low")
            low_out.append(helper.make_tensor_value_info(back, elem, None))
        if not any(j in outs and y in self.floats for j, y in enumerate(node.output) if y):
            raise ValueError(f"layer {node.name!r} has no floating-point output to switch")
        then = helper.make_graph([high], f"{node.name}/high", [], high_out)
        other = helper.make_graph([*before, low, *after], f"{node.name}/low", [], low_out)
        return helper.make_node("If", [gate_input(self.col[node.name])],
                                [y for y in node.output if y], name=f"{node.name}/gate",
                                then_branch=then, else_branch=other)


def _free_leading_axis(graph: onnx.GraphProto) -> None:
    """Declare the first axis of every input and output free (``ROWS``), and of every
    inferred shape inside that led with the inputs' fixed batch.

    Inferred shapes are relaxed, not dropped: without them ONNX Runtime took 4.4 s instead
    of 0.4 s to build the demo's batched switchboard (its own inference names a new
    symbol per Where, and plans memory for each). A shape relaxed by mistake (a leading
    axis that only equals the batch) is corrected by the runtime's inference, and a
    model whose rows do not stack fails the evaluator's probe.
    """
    fixed = set()
    for vi in (*graph.input, *graph.output):
        dims = vi.type.tensor_type.shape.dim
        if not dims:
            raise ValueError(f"{vi.name!r} has no leading axis to stack plans on")
        if dims[0].HasField("dim_value"):
            fixed.add(dims[0].dim_value)
        dims[0].Clear()
        dims[0].dim_param = ROWS
    for vi in graph.value_info:
        dims = vi.type.tensor_type.shape.dim
        if dims and dims[0].HasField("dim_value") and dims[0].dim_value in fixed:
            dims[0].Clear()
            dims[0].dim_param = ROWS


def _condition(keep_bool: str, column: int, rank: int | None, layer: str,
               graph: onnx.GraphProto, batched: bool) -> tuple[str, list[onnx.NodeProto]]:
    """The bool that selects layer ``column``'s high branch: a scalar, or [B, 1, ...] rows.

    Its constants go to ``graph`` (the main graph, seen from every body); its nodes go
    where the layer is (in a body, read there from the outer scope).
    """
    index = f"{PLAN_INPUT}/col{column}"
    graph.initializer.append(numpy_helper.from_array(np.array(column, np.int64), index))
    bit = f"{PLAN_INPUT}/bit{column}"
    gather = helper.make_node("Gather", [keep_bool, index], [bit], axis=1 if batched else 0,
                              name=bit)
    if not batched:
        return bit, [gather]
    if not rank:
        raise ValueError(f"layer {layer!r}: output rank unknown, cannot switch it per row")
    shape = f"{bit}/shape"
    graph.initializer.append(numpy_helper.from_array(np.array([-1] + [1] * (rank - 1), np.int64),
                                                     shape))
    rows = f"{bit}/rows"
    return rows, [gather, helper.make_node("Reshape", [bit, shape], [rows], name=rows)]


def _ranks(model: onnx.ModelProto) -> dict[str, int]:
    """Rank of each tensor that shape inference could tell (prepare_model ran it)."""
    out = {}
    for vi in (*model.graph.value_info, *model.graph.output, *model.graph.input):
        t = vi.type.tensor_type
        if t.HasField("shape"):
            out[vi.name] = len(t.shape.dim)
    return out
