"""Evaluators on generated models, for tests that want real verdicts without Ray."""

from __future__ import annotations

from pathlib import Path

from distprec.cache.calibration import calibration_ranges
from distprec.candidates.backends import OrtBackend
from distprec.candidates.model import layer_table, prepare_model
from distprec.candidates.rewrites import not_low
from distprec.data import input_specs, random_feeds
from distprec.demo import DEMO_CHECK, planted_mlp
from distprec.evaluator import Evaluator, Setup
from distprec.search import reference_outputs

#: planted_mlp with 12 blocks: the default first plant (at 12%) sits where
#: activations are too small to overflow, so it would not be needed.
PLANTS = ((0.25, "overflow"), (0.5, "underflow"), (0.85, "overflow"))
CHECK = DEMO_CHECK


def planted_file(folder: Path, blocks: int = 12):
    """A planted MLP with ``PLANTS`` saved in ``folder``: (the planted model, its path)."""
    model = planted_mlp(blocks=blocks, plants=PLANTS)
    path = folder / "planted.onnx"
    path.write_bytes(model.model.SerializeToString())
    return model, str(path)


def make_evaluator(model, precision="fp16", check=CHECK) -> Evaluator:
    model = prepare_model(model)
    layers = layer_table(model, not_low(model, precision))
    searchable = tuple(x.name for x in layers if x.searchable)
    feeds = random_feeds(input_specs(model), {}, seed=0, samples=2)
    ranges = calibration_ranges(model, feeds)[0] if precision == "int8" else None
    setup = Setup(model.SerializeToString(), precision, searchable, feeds,
                  reference_outputs(model, feeds), check, ranges)
    return Evaluator(setup, OrtBackend("cpu", threads=1))


