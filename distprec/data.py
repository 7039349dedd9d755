"""Inputs and reference outputs: user files in, validated lists of feed dicts out.

Formats: .npz (never unpickled), Polygraphy's JSON (``--save-inputs`` / ``--save-outputs``),
and Polygraphy's data-loader-script convention (``file.py:func`` yielding feed dicts).
"""

from __future__ import annotations

import base64
import importlib.util
import io
import json
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
from onnx import helper

from distprec.atomic import write_bytes
from distprec.candidates.model import graph_inputs
from distprec.errors import InputError

Feed = dict[str, np.ndarray]
HASH_KEY = "__distprec_model_hash__"


@dataclass(frozen=True)
class InputSpec:
    name: str
    dtype: np.dtype
    shape: tuple[int | str | None, ...]  # str or None: a dynamic dimension

    def matches(self, shape: tuple[int, ...]) -> bool:
        return len(shape) == len(self.shape) and all(
            not isinstance(d, int) or d == s for d, s in zip(self.shape, shape)
        )


def input_specs(model: onnx.ModelProto) -> list[InputSpec]:
    specs = []
    for vi in graph_inputs(model):
        tt = vi.type.tensor_type
        dims = tuple(d.dim_value if d.HasField("dim_value") else (d.dim_param or None)
                     for d in tt.shape.dim)
        specs.append(InputSpec(vi.name, np.dtype(helper.tensor_dtype_to_np_dtype(tt.elem_type)),
                               dims))
    return specs


def parse_input_shapes(text: str | None, specs: list[InputSpec]) -> dict[str, tuple[int, ...]]:
    """``name:1x3x224x224[,name2:...]`` (Polygraphy's ``--input-shapes`` form)."""
    shapes: dict[str, tuple[int, ...]] = {}
    known = {s.name for s in specs}
    for item in (text or "").replace(" ", ",").split(","):
        if not item:
            continue
        name, _, dims = item.rpartition(":")
        if not name or not re.fullmatch(r"\d+(x\d+)*", dims):
            raise InputError(f"bad --input-shapes entry {item!r}: expected name:1x3x224x224")
        if name not in known:
            raise InputError(f"--input-shapes names {name!r}, which is not a model input "
                             f"(inputs: {', '.join(sorted(known))})")
        shapes[name] = tuple(int(d) for d in dims.split("x"))
    return shapes


def random_feeds(specs: list[InputSpec], shapes: dict[str, tuple[int, ...]],
                 seed: int = 0, samples: int = 1) -> list[Feed]:
    """Seeded random data: uniform [0, 1) floats, small non-negative integers."""
    rng = np.random.default_rng(seed)
    feeds = []
    for _ in range(samples):
        feed = {}
        for spec in specs:
            shape = shapes.get(spec.name) or tuple(
                d if isinstance(d, int) and d > 0 else 1 for d in spec.shape)
            if not spec.matches(shape):
                raise InputError(f"--input-shapes {spec.name}:{'x'.join(map(str, shape))} "
                                 f"does not fit the model's shape {_fmt(spec.shape)}")
            if np.issubdtype(spec.dtype, np.floating):
                feed[spec.name] = rng.random(shape, dtype=np.float32).astype(spec.dtype)
            elif spec.dtype == np.bool_:
                feed[spec.name] = rng.integers(0, 2, shape).astype(np.bool_)
            else:
                feed[spec.name] = rng.integers(0, 4, shape).astype(spec.dtype)
        feeds.append(feed)
    return feeds


def load_feeds(path: str | Path, specs: list[InputSpec]) -> list[Feed]:
    """Read ``--inputs``: .npz (leading batch axis = several samples) or Polygraphy JSON."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"inputs file not found: {path}")
    if path.suffix == ".json":
        data = _read_polygraphy_json(path)
        if isinstance(data, dict):
            data = [data]
        if not isinstance(data, list) or not all(isinstance(d, dict) for d in data):
            raise InputError(f"{path}: expected a list of feed dicts (polygraphy --save-inputs)")
        feeds = data
    else:
        arrays = _read_npz(path)
        feeds = _split_samples(arrays, specs, path)
    return check_feeds(feeds, specs, str(path))


def feeds_from_script(spec: str, specs: list[InputSpec]) -> list[Feed]:
    """Polygraphy's ``--data-loader-script file.py:func`` (func defaults to load_data)."""
    func = load_user_function(spec, default="load_data")
    try:
        feeds = [dict(f) for f in func()]
    except Exception as exc:
        raise InputError(f"data loader {spec} failed: {type(exc).__name__}: {exc}") from None
    return check_feeds(feeds, specs, spec)


def check_feeds(feeds: list[Feed], specs: list[InputSpec], origin: str) -> list[Feed]:
    if not feeds:
        raise InputError(f"{origin}: no samples")
    want = {s.name: s for s in specs}
    out = []
    for i, feed in enumerate(feeds):
        if set(feed) != set(want):
            raise InputError(f"{origin}: sample {i} has inputs {sorted(feed)}, "
                             f"the model takes {sorted(want)}")
        fixed = {}
        for name, value in feed.items():
            arr = np.asarray(value)
            spec = want[name]
            if arr.dtype != spec.dtype:
                raise InputError(f"{origin}: input {name!r} is {arr.dtype}, "
                                 f"the model takes {spec.dtype}")
            if not spec.matches(arr.shape):
                raise InputError(f"{origin}: input {name!r} has shape {_fmt(arr.shape)}, "
                                 f"the model takes {_fmt(spec.shape)}")
            fixed[name] = arr
        out.append(fixed)
    return out


def save_outputs(path: str | Path, outputs: list[Feed], model_hash: str) -> None:
    """Golden outputs as .npz: one array per output with a leading sample axis."""
    names = list(outputs[0])
    arrays = {n: np.stack([o[n] for o in outputs]) for n in names}
    arrays[HASH_KEY] = np.array(model_hash)
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    write_bytes(path, buf.getvalue())


def load_outputs(path: str | Path, output_names: list[str], samples: int,
                 model_hash: str) -> list[Feed]:
    """Read ``--golden``: distprec's .npz or Polygraphy's ``--save-outputs`` JSON."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"golden outputs file not found: {path}")
    if path.suffix == ".json":
        outputs = _polygraphy_run_results(_read_polygraphy_json(path), path)
    else:
        arrays = _read_npz(path)
        saved_hash = arrays.pop(HASH_KEY, None)
        if saved_hash is not None and str(saved_hash) != model_hash:
            raise InputError(f"{path}: golden outputs were made for another model")
        if any(a.ndim == 0 for a in arrays.values()):
            raise InputError(f"{path}: golden arrays need a leading sample axis")
        outputs = _by_sample(arrays, path, "outputs")
    if not outputs or set(outputs[0]) != set(output_names):
        got = sorted(outputs[0]) if outputs else []
        raise InputError(f"{path}: golden outputs {got} do not match the model's outputs "
                         f"{sorted(output_names)}")
    if len(outputs) != samples:
        raise InputError(f"{path}: {len(outputs)} golden samples for {samples} input samples")
    return outputs


def read_layer_names(path: str | Path, model_hash: str) -> list[str]:
    """Layer names from a result.json (its high_precision_layers) or a text file.

    A text file holds names separated by newlines or commas. A result made for another
    model (its model_hash differs) is refused: same-named layers of other weights are not
    the same answer.
    """
    file = Path(path)
    if not file.is_file():
        raise InputError(f"layer file not found: {path}")
    try:
        text = file.read_text()
    except UnicodeDecodeError:
        raise InputError(f"{path}: not a text file of layer names") from None
    if file.suffix == ".json":
        try:
            data = json.loads(text)
            names = data["high_precision_layers"]
            if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
                raise TypeError
        except Exception:
            raise InputError(f"{path}: no high_precision_layers list in it") from None
        if data.get("model_hash") not in (None, model_hash):
            raise InputError(f"{path} was made for another model (model_hash differs)")
        return names
    return [n.strip() for line in text.splitlines() for n in line.split(",") if n.strip()]


def load_user_function(spec: str, default: str):
    """Import ``FILE.py[:FUNC]``. User code is run, as Polygraphy does; nothing is unpickled."""
    file, _, name = spec.partition(":")
    name = name or default
    path = Path(file)
    if not path.is_file():
        raise InputError(f"script not found: {file}")
    try:
        module_spec = importlib.util.spec_from_file_location(f"distprec_user_{path.stem}", path)
        module = importlib.util.module_from_spec(module_spec)
        module_spec.loader.exec_module(module)
    except Exception as exc:
        raise InputError(f"cannot import {file}: {type(exc).__name__}: {exc}") from None
    func = getattr(module, name, None)
    if not callable(func):
        raise InputError(f"{file} has no function {name!r}")
    return func


def _read_npz(path: Path) -> dict[str, np.ndarray]:
    try:
        with np.load(path, allow_pickle=False) as npz:
            return {k: npz[k] for k in npz.files}
    except Exception as exc:
        raise InputError(f"cannot read {path} as .npz: {type(exc).__name__}: {exc}") from None


def _split_samples(arrays: dict[str, np.ndarray], specs: list[InputSpec], path: Path) -> list[Feed]:
    """One sample, unless every array has one more axis than its input: then axis 0."""
    by_name = {s.name: s for s in specs}
    extra = [k for k in arrays if k in by_name and arrays[k].ndim == len(by_name[k].shape) + 1]
    if extra and len(extra) == len(arrays):
        return _by_sample(arrays, path, "inputs")
    return [arrays]


def _by_sample(arrays: dict[str, np.ndarray], path: Path, what: str) -> list[Feed]:
    """Arrays with a leading sample axis -> one dict per sample."""
    counts = {len(a) for a in arrays.values()}
    if len(counts) != 1:
        raise InputError(f"{path}: {what} have different numbers of samples")
    return [{k: a[i] for k, a in arrays.items()} for i in range(counts.pop())]


def _read_polygraphy_json(path: Path):
    def decode(pairs):
        d = dict(pairs)
        if d.get("polygraphy_class") == "ndarray" or "__polygraphy_encoded_ndarray" in d:
            raw = base64.b64decode(d["array"].encode(), validate=True)
            return np.load(io.BytesIO(raw), allow_pickle=False)
        if d.get("polygraphy_class") == "LazyArray":  # Polygraphy >= 0.49 wraps outputs
            return d["values"]
        return d

    try:
        return json.loads(path.read_text(), object_pairs_hook=decode)
    except Exception as exc:
        raise InputError(f"cannot read {path} as Polygraphy JSON: {type(exc).__name__}: "
                         f"{exc}") from None


def _polygraphy_run_results(data, path: Path) -> list[Feed]:
    """RunResults: {"lst": [[runner, [IterationResult, ...]], ...]}; the first runner is used."""
    try:
        iterations = data["lst"][0][1] if isinstance(data, dict) and "lst" in data else data
        return [dict(it.get("outputs", it)) for it in iterations]
    except Exception:
        raise InputError(f"{path}: not Polygraphy --save-outputs JSON") from None


def _fmt(shape) -> str:
    return "x".join("?" if not isinstance(d, int) else str(d) for d in shape) or "scalar"
