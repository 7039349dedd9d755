"""ONNX node names to TensorRT layer names, and a plan to per-layer precision constraints.

TensorRT's ONNX parser names each layer after its node; an unnamed node is named
``node_of_<its first output>``. One node can give several layers (the first takes the
name, the others ``<name>_<n>``); from TensorRT 10 the parser also writes
``[ONNX Layer: <node>]`` into ``ILayer.metadata``, which is used where present. The builder
can fuse layers away: the engine inspector then reports ``a + b`` or a Myelin region in
their place, and a kept layer that no longer exists on its own is reported, not ignored.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import onnx

_METADATA = re.compile(r"\[ONNX Layer: (.*?)\]")


def parser_node_name(node: onnx.NodeProto) -> str:
    """The name TensorRT's ONNX parser gives the layers of ``node``."""
    if node.name:
        return node.name
    return f"node_of_{node.output[0]}" if node.output else ""


@dataclass(frozen=True)
class NetworkLayer:
    """What the backend records of one layer of a parsed network."""

    name: str
    metadata: str = ""


def map_layers(nodes: Sequence[str], layers: Sequence[NetworkLayer]) -> dict[str, list[str]]:
    """ONNX node name (as the parser names it) -> its TensorRT layer names, in network order.

    Metadata decides where it names a node; otherwise a layer named ``node`` or
    ``node_<n>`` belongs to that node, the longest matching node name winning (so node
    ``conv_1`` keeps its own layer even beside a node ``conv``).
    """
    known = set(nodes)
    out: dict[str, list[str]] = {n: [] for n in nodes}
    for layer in layers:
        owner = _from_metadata(layer.metadata, known)
        if owner is None:
            owner = _from_name(layer.name, known)
        if owner is not None:
            out[owner].append(layer.name)
    return out


def _from_metadata(metadata: str, known: set[str]) -> str | None:
    for name in _METADATA.findall(metadata or ""):
        if name in known:
            return name
    return None


def _from_name(layer: str, known: set[str]) -> str | None:
    if layer in known:
        return layer
    m = re.fullmatch(r"(.+)_(\d+)", layer)
    while m:
        if m.group(1) in known:
            return m.group(1)
        m = re.fullmatch(r"(.+)_(\d+)", m.group(1))
    return None


@dataclass
class Constraints:
    """What the legacy path pins to FP32 for one plan, and what it could not pin."""

    fp32_layers: list[str] = field(default_factory=list)  # TensorRT layer names
    unmapped: list[str] = field(default_factory=list)  # kept nodes with no layer at all


def plan_constraints(keep: Iterable[str], mapping: dict[str, list[str]]) -> Constraints:
    """The TensorRT layers to pin to FP32 (precision and output types) for ``keep``."""
    c = Constraints()
    for node in sorted(keep):
        layers = mapping.get(node, [])
        if layers:
            c.fp32_layers += layers
        else:
            c.unmapped.append(node)
    return c


def engine_layer_names(inspector_json: dict) -> list[str]:
    """Layer names from IEngineInspector.get_engine_information(JSON), as parsed JSON.

    Each entry is a dict with "Name" at DETAILED verbosity, or a plain string otherwise.
    """
    names = []
    for entry in inspector_json.get("Layers", []):
        names.append(entry.get("Name", "") if isinstance(entry, dict) else str(entry))
    return names


def fused_away(pinned: Iterable[str], engine_layers: Iterable[str]) -> list[str]:
    """Pinned layers that are not an engine layer of their own (fused into another).

    TensorRT names a fused layer ``a + b``; a layer inside a Myelin region or folded into
    its neighbour still ran, but its pin may not have held: the caller reports these.
    """
    alone = set()
    for name in engine_layers:
        alone.add(name)
    return sorted(set(pinned) - alone)
