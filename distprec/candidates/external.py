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
LIMIT = 2**31 - 2**24


def is_large(model: onnx.ModelProto) -> bool:
    return model.ByteSize() >= LIMIT


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


def _copy_without_weights(model: onnx.ModelProto, into: onnx.ModelProto) -> None:
    """A copy with every tensor's raw bytes left out (each copied tensor is small)."""
    into.ir_version, into.producer_name = model.ir_version, model.producer_name
    into.opset_import.extend(model.opset_import)
    into.metadata_props.extend(model.metadata_props)
    into.functions.extend(model.functions)
    graph = model.graph
    into.graph.name = graph.name
    into.graph.input.extend(graph.input)
    into.graph.output.extend(graph.output)
    into.graph.value_info.extend(graph.value_info)
    for tensor in graph.initializer:
        t = into.graph.initializer.add()
        t.name, t.data_type, t.data_location = tensor.name, tensor.data_type, tensor.data_location
        t.dims.extend(tensor.dims)
    for node in graph.node:  # node attributes (If branches, Constant values) may hold weights
        into.graph.node.add().CopyFrom(node)


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
