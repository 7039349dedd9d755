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
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
from onnx import helper

from distprec.atomic import write_bytes
from distprec.candidates.model import graph_inputs
from distprec.errors import InputError
from distprec.npzsafe import npz_names, read_npz
from distprec.usercode import guarded

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
        # -1 (as some exporters write), ?, a symbolic name: all accept any size
        dims = tuple(d.dim_value if d.HasField("dim_value") and d.dim_value > 0
                     else (d.dim_param or None) for d in tt.shape.dim)
        specs.append(InputSpec(vi.name, np.dtype(helper.tensor_dtype_to_np_dtype(tt.elem_type)),
                               dims))
    return specs


def parse_input_shapes(text: str | None, specs: list[InputSpec]) -> dict[str, tuple[int, ...]]:
    """``name:1x3x224x224[,name2:...]`` (Polygraphy's ``--input-shapes`` form)."""
    shapes: dict[str, tuple[int, ...]] = {}
    known = {s.name for s in specs}
    # Polygraphy's name:[1,3,224,224] -> name:1x3x224x224 (commas inside brackets)
    text = re.sub(r"\[([\d,\s]*)\]",
                  lambda m: "x".join(d.strip() for d in m.group(1).split(",")), text or "")
    for item in text.replace(" ", ",").split(","):
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


def parse_val_range(text: str | list | None,
                    specs: list[InputSpec]) -> dict[str, tuple[float, float]]:
    """Polygraphy's ``--val-range [-1,1] x:[0,255]`` ("" = every input not named)."""
    if isinstance(text, (list, tuple)):
        text = " ".join(text)
    known = {s.name for s in specs}
    ranges: dict[str, tuple[float, float]] = {}
    for name, lo, hi in re.findall(r"(?:(\S+?):)?\[\s*([^,\]]+?)\s*,\s*([^\]]+?)\s*\]",
                                   text or ""):
        try:
            low, high = float(lo), float(hi)
        except ValueError:
            raise InputError(f"--val-range: [{lo},{hi}] is not a pair of numbers") from None
        if not low <= high:
            raise InputError(f"--val-range: [{lo},{hi}] has its low end above its high end")
        if name and name not in known:
            raise InputError(f"--val-range names {name!r}, which is not a model input "
                             f"(inputs: {', '.join(sorted(known))})")
        ranges[name] = (low, high)
    if text and text.strip() and not ranges:
        raise InputError(f"bad --val-range {text!r}: expected [low,high] or name:[low,high]")
    return ranges


def defaulted_dims(specs: list[InputSpec], shapes: dict[str, tuple[int, ...]]) -> str:
    """A hint naming the first input whose dynamic dimensions ``random_feeds`` set to 1
    (no --input-shapes for it), for an error that may come from them; "" if none."""
    for spec in specs:
        if spec.name not in shapes and any(not isinstance(d, int) for d in spec.shape):
            dims = "x".join(str(d) if isinstance(d, int) else "N" for d in spec.shape)
            return (f"input {spec.name!r} has dynamic dimensions {_fmt(spec.shape)}, set "
                    f"to 1: give their sizes with --input-shapes {spec.name}:{dims}")
    return ""


def random_feeds(specs: list[InputSpec], shapes: dict[str, tuple[int, ...]],
                 seed: int = 0, samples: int = 1,
                 ranges: dict[str, tuple[float, float]] | None = None) -> list[Feed]:
    """Seeded random data: uniform [0, 1) floats, small non-negative integers, unless
    ``ranges`` (``--val-range``) gives an input's [low, high]."""
    rng = np.random.default_rng(seed)
    ranges = ranges or {}
    feeds = []
    for _ in range(samples):
        feed = {}
        for spec in specs:
            shape = shapes.get(spec.name)
            if shape is None:
                shape = tuple(d if isinstance(d, int) and d > 0 else 1 for d in spec.shape)
                if shape != spec.shape and not feeds:
                    warnings.warn(f"input {spec.name!r} has dynamic dimensions "
                                  f"{_fmt(spec.shape)}: set to {_fmt(shape)} (as Polygraphy "
                                  "does); give --input-shapes to choose", stacklevel=2)
            if not spec.matches(shape):
                raise InputError(f"--input-shapes {spec.name}:{'x'.join(map(str, shape))} "
                                 f"does not fit the model's shape {_fmt(spec.shape)}")
            span = ranges.get(spec.name, ranges.get(""))
            if np.issubdtype(spec.dtype, np.floating):
                values = rng.random(shape, dtype=np.float32)
                if span is not None:
                    values = span[0] + values * np.float32(span[1] - span[0])
                feed[spec.name] = values.astype(spec.dtype)
            elif spec.dtype == np.bool_:
                feed[spec.name] = rng.integers(0, 2, shape).astype(np.bool_)
            else:
                low, high = (int(np.ceil(span[0])), int(np.floor(span[1]))) if span else (0, 3)
                feed[spec.name] = rng.integers(low, high + 1, shape).astype(spec.dtype)
        feeds.append(feed)
    return feeds


def load_feeds(path: str | Path | list, specs: list[InputSpec]) -> list[Feed]:
    """Read ``--inputs``: .npz (leading batch axis = several samples) or Polygraphy JSON.

    Several files (Polygraphy's ``--load-inputs a.json b.json``) are read in order and
    their samples joined.
    """
    if isinstance(path, (list, tuple)):
        feeds = [f for one in path for f in load_feeds(one, specs)]
        return check_feeds(feeds, specs, ", ".join(map(str, path)))
    path = Path(path)
    if path.is_dir():
        return load_feeds(_files_in(path), specs)
    if not path.is_file():
        raise InputError(f"inputs file not found: {path}")
    if path.suffix == ".json":
        data = _read_polygraphy_json(path)
        if isinstance(data, dict) and "lst" in data:
            raise InputError(f"{path} holds outputs (polygraphy --save-outputs), not inputs")
        if isinstance(data, dict):
            data = [data]
        if not isinstance(data, list) or not all(isinstance(d, dict) for d in data):
            raise InputError(f"{path}: expected a list of feed dicts (polygraphy --save-inputs)")
        feeds = [_cast_float64(d, specs, path) for d in data]
    else:
        want = sorted(s.name for s in specs)
        names = npz_names(path)  # the zip directory: an array of another name is never read
        if sorted(names) != want:
            raise InputError(f"{path}: sample 0 has inputs {sorted(names)}, the model takes "
                             f"{want}")
        arrays = _read_npz(path, want)
        feeds = _split_samples(arrays, specs, path)
    return check_feeds(feeds, specs, str(path))


def _files_in(folder: Path) -> list[Path]:
    """A folder of per-iteration files: its .json/.npz files in natural order (2 before 10)."""
    files = [p for p in folder.iterdir() if p.suffix in (".json", ".npz") and p.is_file()]
    if not files:
        raise InputError(f"{folder} is a directory with no .json or .npz files in it")
    return sorted(files, key=lambda p: [int(t) if t.isdigit() else t
                                        for t in re.split(r"(\d+)", p.name)])


def _cast_float64(feed: Feed, specs: list[InputSpec], origin) -> Feed:
    """Polygraphy casts a float64 array to the model's float type, with a warning."""
    want = {s.name: s.dtype for s in specs}
    out = {}
    for name, value in feed.items():
        arr = np.asarray(value)
        target = want.get(name)
        if (arr.dtype == np.float64 and target is not None and target != np.float64
                and np.issubdtype(target, np.floating)):
            warnings.warn(f"{origin}: input {name!r} is float64; cast to {target} as "
                          "Polygraphy does", stacklevel=2)
            arr = arr.astype(target)
        out[name] = arr
    return out


def feeds_from_script(spec: str, specs: list[InputSpec]) -> list[Feed]:
    """Polygraphy's ``--data-loader-script file.py:func`` (func defaults to load_data)."""
    func = load_user_function(spec, default="load_data")
    where = f"{spec.partition(':')[0]}:{spec.partition(':')[2] or 'load_data'}"
    feeds = guarded(where, "data loader", lambda: [dict(f) for f in func()])
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


def load_outputs(path: str | Path | list, output_names: list[str], samples: int,
                 model_hash: str, runner: str | None = None) -> list[Feed]:
    """Read ``--golden``: distprec's .npz or Polygraphy's ``--save-outputs`` JSON.

    Several files (``--load-outputs a.json b.json``) are joined in order, as their
    iterations; ``runner`` picks a runner of a ``--save-results`` file by name.
    """
    if isinstance(path, (list, tuple)):
        outputs = [o for one in path for o in _read_outputs(Path(one), model_hash, runner,
                                                                output_names)]
        path = ", ".join(map(str, path))
    else:
        outputs = _read_outputs(Path(path), model_hash, runner, output_names)
    if not outputs or set(outputs[0]) != set(output_names):
        got = sorted(outputs[0]) if outputs else []
        raise InputError(f"{path}: golden outputs {got} do not match the model's outputs "
                         f"{sorted(output_names)}")
    if len(outputs) != samples:
        raise InputError(f"{path}: {len(outputs)} golden samples for {samples} input samples")
    return outputs


def _read_outputs(path: Path, model_hash: str, runner: str | None,
                  output_names: list[str]) -> list[Feed]:
    if path.is_dir():
        return [o for one in _files_in(path) for o in _read_outputs(one, model_hash, runner,
                                                                    output_names)]
    if not path.is_file():
        raise InputError(f"golden outputs file not found: {path}")
    if path.suffix == ".json":
        return _polygraphy_run_results(_read_polygraphy_json(path), path, runner)
    names = [n for n in npz_names(path) if n != HASH_KEY]  # the zip directory alone
    if sorted(names) != sorted(output_names):  # an array of another name is never read
        raise InputError(f"{path}: golden outputs {sorted(names)} do not match the model's "
                         f"outputs {sorted(output_names)}")
    arrays = _read_npz(path, [*output_names, HASH_KEY])
    saved_hash = arrays.pop(HASH_KEY, None)
    if saved_hash is not None and str(saved_hash) != model_hash:
        raise InputError(f"{path}: golden outputs were made for another model")
    if any(a.ndim == 0 for a in arrays.values()):
        raise InputError(f"{path}: golden arrays need a leading sample axis")
    return _by_sample(arrays, path, "outputs")


def read_layer_names(path: str | Path, model_hash: str, front_point: int | None = None
                     ) -> list[str]:
    """Layer names from a result.json (its high_precision_layers, or with ``front_point``
    the layers of that point of its accuracy-latency front), a JSON list, or a text file
    of one name per line.

    Names are taken whole: a name may hold commas, quotes, colons and inner spaces (lines
    are stripped at their ends). A result made for another model (its model_hash differs)
    is refused: same-named layers of other weights are not the same answer.
    """
    file = Path(path)
    if not file.is_file():
        raise InputError(f"layer file not found: {path}")
    try:
        text = file.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise InputError(f"{path}: not a text file of layer names") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        if file.suffix == ".json":
            raise InputError(f"{path}: not JSON ({exc.msg}, line {exc.lineno})") from None
        data = None
    if file.suffix != ".json" and not isinstance(data, (list, dict)):
        return [line.strip() for line in text.splitlines() if line.strip()]
    if front_point is not None:
        front = ((data.get("latency") or {}).get("front") if isinstance(data, dict) else None)
        if not front:
            raise InputError(f"{path}: no accuracy-latency front in it (a result.json of "
                             "distprec search --objective latency)")
        if not 0 <= front_point < len(front):
            raise InputError(f"--front-point {front_point}: the front of {path} has points 0 "
                             f"to {len(front) - 1}")
        data = {**data, "high_precision_layers": front[front_point].get("keep")}
    names = data.get("high_precision_layers") if isinstance(data, dict) else data
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        raise InputError(f"{path}: no high_precision_layers list of names in it (a "
                         "result.json, a JSON list of names, or one name per line)")
    if isinstance(data, dict) and data.get("model_hash") not in (None, model_hash):
        raise InputError(f"{path} was made for another model (model_hash differs)")
    return names


def load_user_function(spec: str, default: str):
    """Import ``FILE.py[:FUNC]``. User code is run, as Polygraphy does; nothing is unpickled."""
    file, _, name = spec.partition(":")
    name = name or default
    path = Path(file)
    if not path.is_file():
        raise InputError(f"script not found: {file}")
    module_spec = importlib.util.spec_from_file_location(f"distprec_user_{path.stem}", path)
    if module_spec is None or module_spec.loader is None:
        raise InputError(f"cannot import {file}: not a Python file")
    module = importlib.util.module_from_spec(module_spec)
    guarded(file, "importing it", module_spec.loader.exec_module, module)
    func = getattr(module, name, None)
    if not callable(func):
        raise InputError(f"{file} has no function {name!r}")
    return func


def _read_npz(path: Path, only: list[str] | None = None) -> dict[str, np.ndarray]:
    return read_npz(path, only=only)  # headers checked, sizes bounded before decompression


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
    """Polygraphy's JSON: ndarrays as base64 .npy (never pickles), LazyArray wrappers."""
    def decode(pairs):
        d = dict(pairs)
        kind = d.get("polygraphy_class")
        if kind == "ndarray" or "__polygraphy_encoded_ndarray" in d:
            raw = base64.b64decode(d["array"].encode(), validate=True)
            return np.load(io.BytesIO(raw), allow_pickle=False)
        if kind in ("LazyArray", "LazyNumpyArray"):
            if not isinstance(d.get("values"), np.ndarray):
                raise ValueError(f"{kind} without an array in it")
            return d["values"]
        if kind is not None and kind not in ("IterationResult", "RunResults", "TensorMetadata",
                                             "MetadataTuple", "BoundedShape", "Shape"):
            raise ValueError(f"unsupported Polygraphy object {kind!r}")
        return d

    try:
        return json.loads(path.read_text(), object_pairs_hook=decode)
    except Exception as exc:
        raise InputError(f"cannot read {path} as Polygraphy JSON: {type(exc).__name__}: "
                         f"{exc}") from None


_RUNNER = re.compile(r'\{\s*"lst"\s*:\s*\[\s*\[\s*("(?:[^"\\]|\\.)*")')


def golden_runner(path: str | Path | list | None) -> str | None:
    """The runner name of a Polygraphy ``--save-outputs`` file (its first runner), so the
    golden file distprec writes back keeps the user's name; None for .npz or unknown.
    Read from the file's head only: the arrays after it may be large."""
    first = path[0] if isinstance(path, list) and path else path
    if not first or not str(first).endswith(".json") or not Path(first).is_file():
        return None
    with open(first, "rb") as f:
        head = f.read(4096).decode("utf-8", "replace")
    found = _RUNNER.match(head.lstrip())
    try:
        return json.loads(found.group(1)) if found else None
    except json.JSONDecodeError:
        return None


def _polygraphy_run_results(data, path: Path, runner: str | None = None) -> list[Feed]:
    """RunResults: {"lst": [[runner, [IterationResult, ...]], ...]}; the first runner unless
    ``runner`` names one (a name or a prefix such as ``onnxrt``)."""
    if isinstance(data, dict) and "lst" in data:
        runs = data["lst"]
        if not isinstance(runs, list) or not all(isinstance(r, list) and len(r) == 2
                                                 for r in runs):
            raise InputError(f"{path}: its \"lst\" is not a list of [runner, iterations] "
                             "pairs (polygraphy --save-outputs)")
        names = [str(r[0]) for r in runs]
        if runner is not None:
            runs = [r for r in runs if r[0] == runner] or [
                r for r in runs if str(r[0]).startswith(runner)]
            if not runs:
                raise InputError(f"{path}: no runner {runner!r} (runners: {', '.join(names)})")
        if not runs:
            raise InputError(f"{path}: no runner results in it")
        iterations = runs[0][1]
    else:
        iterations = data
    try:
        outputs = [dict(it.get("outputs", it)) for it in iterations]
    except Exception:
        raise InputError(f"{path}: not Polygraphy --save-outputs JSON") from None
    for i, out in enumerate(outputs):
        bad = [k for k, v in out.items() if not isinstance(v, np.ndarray)]
        if bad:
            raise InputError(f"{path}: iteration {i} output {bad[0]!r} is not an array")
    return outputs


def _fmt(shape) -> str:
    return "x".join("?" if not isinstance(d, int) else str(d) for d in shape) or "scalar"
