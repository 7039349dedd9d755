"""The graphs inside If/Loop/Scan nodes (bodies), as the layer table and the rewrites walk them.

A model's computation can live entirely in bodies: an opset-18 export of a voice-activity
model keeps every Conv inside the branches of one ``If``. Bodies see the values of every
enclosing graph by name (outer-scope references), so a walk carries what each scope sees.

Order convention: a body's nodes come right after the node that holds it, its bodies in
the order the node stores them (onnx.helper stores attributes sorted by name, so
``else_branch`` before ``then_branch``), each body in its own topological order; nested
bodies likewise, depth first.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import onnx

_GRAPH_ATTRS = (onnx.AttributeProto.GRAPH, onnx.AttributeProto.GRAPHS)


def bodies(node: onnx.NodeProto) -> list[tuple[str, onnx.GraphProto]]:
    """(attribute name, graph) of each body of ``node``: If's two branches, Loop/Scan's body."""
    out = []
    for attr in node.attribute:
        if attr.type == onnx.AttributeProto.GRAPH:
            out.append((attr.name, attr.g))
        elif attr.type == onnx.AttributeProto.GRAPHS:
            out.extend((f"{attr.name}[{i}]", g) for i, g in enumerate(attr.graphs))
    return out


def has_body(node: onnx.NodeProto) -> bool:
    return any(a.type in _GRAPH_ATTRS for a in node.attribute)


@dataclass(frozen=True)
class Placed:
    """A node and where it lives: ``parent`` holds it in its ``branch`` ("" in the main graph)."""

    node: onnx.NodeProto
    parent: str = ""
    branch: str = ""


def walk(graph: onnx.GraphProto, parent: str = "", branch: str = "") -> Iterator[Placed]:
    """Every node of ``graph`` and of its bodies, in the order of the module docstring.

    A body is entered after the caller has seen its parent, so a parent renamed by the
    caller is seen under its new name.
    """
    for node in graph.node:
        yield Placed(node, parent, branch)
        for attr, sub in bodies(node):
            yield from walk(sub, node.name, attr)


def all_graphs(graph: onnx.GraphProto) -> Iterator[onnx.GraphProto]:
    """``graph`` and every body inside it, at any depth."""
    yield graph
    for node in graph.node:
        for _, sub in bodies(node):
            yield from all_graphs(sub)


def outer_reads(graph: onnx.GraphProto) -> set[str]:
    """Names a body reads from enclosing scopes (its own inputs, weights and values excluded)."""
    local = {i.name for i in graph.input} | {t.name for t in graph.initializer}
    reads: set[str] = set()
    for node in graph.node:
        local.update(node.output)
        reads.update(node.input)
        for _, sub in bodies(node):
            reads |= outer_reads(sub)
    return reads - local - {""}


def reads(node: onnx.NodeProto) -> set[str]:
    """What a node needs from its scope: its inputs and its bodies' outer-scope reads."""
    out = {x for x in node.input if x}
    for _, sub in bodies(node):
        out |= outer_reads(sub)
    return out


def all_names(model: onnx.ModelProto) -> set[str]:
    """Every value and weight name of the model, bodies included (to make fresh names)."""
    return _names_in(model.graph) | {o.name for g in all_graphs(model.graph) for o in g.output}


def fresh_name(taken: set[str], name: str) -> str:
    """``name``, or ``name_k`` if ``taken`` holds it already; then taken too."""
    out, k = name, 1
    while out in taken:
        out, k = f"{name}_{k}", k + 1
    taken.add(out)
    return out


def blocked_renames(model: onnx.ModelProto) -> list[tuple[str, str]]:
    """(x, y) for each Cast ``y -> x`` whose output a body reads from outer scope while
    a body of the same node holds a value named ``y``.

    ONNX Runtime folds a Cast away by renaming its output to its input in every body that
    reads it, and refuses where the body has that name already: it logs ``Implicit input
    name x cannot be safely updated to y in one of the subgraphs`` and keeps the Cast
    (graph_utils.cc, CanUpdateImplicitInputNameInSubgraphs). A rewrite should leave none.
    """
    out: list[tuple[str, str]] = []
    for graph in all_graphs(model.graph):
        casts = {n.output[0]: n.input[0] for n in graph.node if n.op_type == "Cast" and
                 not n.domain}
        for node in graph.node:
            subs = [sub for _, sub in bodies(node)]
            if not subs:
                continue
            # ONNX Runtime checks every body of the node that reads x, not only the one
            names = set().union(*map(_names_in, subs))
            read = set().union(*map(outer_reads, subs))
            out += [(x, casts[x]) for x in sorted(read & casts.keys()) if casts[x] in names]
    return out


def _names_in(graph: onnx.GraphProto) -> set[str]:
    """Every value name ``graph`` and its bodies mention."""
    names: set[str] = set()
    for g in all_graphs(graph):
        names.update(i.name for i in g.input)
        names.update(t.name for t in g.initializer)
        for node in g.node:
            names.update(node.input)
            names.update(node.output)
    return names
