"""Models whose weights live in external data files (needed above protobuf's 2 GB limit).

One serialized ModelProto cannot exceed 2 GB, so a large model is never hashed or saved
as one message: the hash streams the graph (weights stripped) and each weight's bytes,
and a saved model keeps its weights in a ``.data`` file beside it.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import onnx
from onnx import external_data_helper

#: Above this many bytes a model takes the external-data path (protobuf's limit, with room
#: for the message framing). A module attribute so that tests can force the path.
LIMIT = int(os.environ.get("DISTPREC_EXTERNAL_LIMIT", 2**31 - 2**24))

#: A model as it travels to actors: its bytes, or (graph without weights, weights by name)
#: when over the limit, so that no one message holds it whole.
Wire = bytes | tuple[bytes, dict[str, bytes]]


def is_large(model: onnx.ModelProto) -> bool:
    return model.ByteSize() >= LIMIT


def to_wire(model: onnx.ModelProto) -> Wire:
    if not is_large(model):
        return model.SerializeToString()
    skeleton = onnx.ModelProto()
    _copy_without_weights(model, skeleton)
    weights = {t.name: t.raw_data for t in model.graph.initializer if len(t.raw_data) > SMALL}
    return skeleton.SerializeToString(), weights


def from_wire(wire: Wire) -> onnx.ModelProto:
    if isinstance(wire, bytes):
        return onnx.load_from_string(wire)
    skeleton, weights = wire
    model = onnx.load_from_string(skeleton)
    for tensor in model.graph.initializer:
        if tensor.name in weights:
            tensor.raw_data = weights[tensor.name]
    return model


def uses_external_data(path: str | Path) -> bool:
    """Whether the file on disk refers to external data (read without loading weights)."""
    model = onnx.load(str(path), load_external_data=False)
    return any(external_data_helper.uses_external_data(t)
               for t in external_data_helper._get_all_tensors(model))


def streamed_hash(model: onnx.ModelProto) -> str:
    """The model's hash without serializing it whole: the graph with the weights' bytes
    left out, then every weight's bytes in order."""
    digest = hashlib.sha256()
    skeleton = onnx.ModelProto()
    _copy_without_weights(model, skeleton)
    digest.update(skeleton.SerializeToString(deterministic=True))
    for tensor in model.graph.initializer:
        digest.update(tensor.name.encode())
        digest.update(tensor.raw_data or tensor.SerializeToString(deterministic=True))
    return digest.hexdigest()[:16]


#: Weights up to this size stay in the graph message (shape tensors, scales): small, and
#: shape inference wants them.
SMALL = 1024


def _copy_fields(src, dst, skip: str) -> None:
    for fd, value in src.ListFields():
        if fd.name == skip:
            continue
        if hasattr(value, "extend"):  # a repeated field
            getattr(dst, fd.name).extend(value)
        elif fd.message_type is not None:
            getattr(dst, fd.name).CopyFrom(value)
        else:
            setattr(dst, fd.name, value)


def _copy_without_weights(model: onnx.ModelProto, into: onnx.ModelProto) -> None:
    """A copy in which every initializer over SMALL bytes has no raw bytes (each tensor is
    copied alone, so no message over 2 GB is ever made)."""
    _copy_fields(model, into, skip="graph")
    _copy_fields(model.graph, into.graph, skip="initializer")
    for tensor in model.graph.initializer:
        t = into.graph.initializer.add()
        t.CopyFrom(tensor)
        if len(t.raw_data) > SMALL:
            t.ClearField("raw_data")


def save_model(model: onnx.ModelProto, path: str | Path, external: bool | None = None) -> None:
    """Save ``model``; a large one (or ``external=True``) with its weights in ``<name>.data``
    beside it. The caller's proto is left unchanged; the files appear complete or not at all
    (written under temporary names, then renamed)."""
    path = Path(path)
    if external is None:
        external = is_large(model)
    if not external:
        from distprec.atomic import write_bytes

        write_bytes(path, model.SerializeToString())
        return
    data_name = path.name + ".data"
    tmp_model = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp_data = path.with_name(f".{data_name}.{os.getpid()}.tmp")
    tmp_data.unlink(missing_ok=True)  # onnx appends to an existing data file
    copy = onnx.ModelProto()
    copy.CopyFrom(model)
    # The data file is written under its final name's temporary twin: the model refers to
    # data_name, so rename both once both are complete.
    external_data_helper.convert_model_to_external_data(
        copy, all_tensors_to_one_file=True, location=tmp_data.name, size_threshold=0)
    onnx.save_model(copy, str(tmp_model))
    for tensor in external_data_helper._get_all_tensors(copy):
        if external_data_helper.uses_external_data(tensor):
            for entry in tensor.external_data:
                if entry.key == "location":
                    entry.value = data_name
    onnx.save_model(copy, str(tmp_model))  # the final location in the model file
    os.replace(tmp_data, path.parent / data_name)
    os.replace(tmp_model, path)
