"""Plan hand-over, engine-cache keys, calibration cache bytes, profiles and plan inputs."""

from __future__ import annotations

import numpy as np
import pytest

from distprec.candidates.backends.trt_state import (
    annotate_plan,
    bind_feed,
    cache_scales,
    engine_key,
    profile_shapes,
    ranges_to_cache,
    read_plan,
    trt_version_int,
)
from distprec.candidates.model import layer_table, prepare_model
from distprec.candidates.rewrites import calibrate, not_low
from distprec.candidates.switchboard import build_switchboard
from distprec.data import input_specs, random_feeds
from distprec.demo import planted_mlp


@pytest.fixture(scope="module")
def planted():
    model = prepare_model(planted_mlp(blocks=4).model)
    searchable = [x.name for x in layer_table(model, not_low(model, "fp16")) if x.searchable]
    return model, searchable


def test_plan_round_trip_leaves_the_input_model_alone(planted):
    model, searchable = planted
    before = model.SerializeToString()
    annotated = annotate_plan(model, {searchable[2], searchable[0]}, "int8")
    assert model.SerializeToString() == before
    assert read_plan(annotated) == ("int8", sorted([searchable[0], searchable[2]]))
    assert read_plan(model) is None
    assert list(annotated.graph.node) == list(model.graph.node)


def test_engine_keys_differ_by_what_changes_the_engine(planted):
    model, searchable = planted
    raw = model.SerializeToString()
    base = dict(path="legacy", trt_version="8.6.1", device="NVIDIA H200", precision="fp16")
    key = engine_key(raw, keep=[searchable[0]], **base)
    assert key == engine_key(raw, keep=[searchable[0]], **base)
    others = [engine_key(raw, keep=[searchable[1]], **base),
              engine_key(raw, keep=[searchable[0]], **{**base, "trt_version": "10.3.0"}),
              engine_key(raw, keep=[searchable[0]], **{**base, "device": "Orin"}),
              engine_key(raw, keep=[searchable[0]], **{**base, "path": "strongly-typed"}),
              engine_key(raw, keep=[searchable[0]], profile={"x": ((1, 4), (8, 4), (8, 4))},
                         **base)]
    assert len({key, *others}) == 6


def test_version_ints_match_the_headers_tensorrt_writes():
    assert trt_version_int((8, 6, 1)) == 8601
    assert trt_version_int((8, 2, 1, 8)) == 8201
    assert trt_version_int((10, 3, 0)) == 100300


def test_calibration_cache_bytes_round_trip_from_real_ranges(planted):
    model, _ = planted
    feeds = random_feeds(input_specs(model), {}, seed=0, samples=2)
    ranges = calibrate(model, feeds)
    cache = ranges_to_cache(ranges, (8, 6, 1))
    header, scales = cache_scales(cache)
    assert header == "TRT-8601-MinMaxCalibration"
    x = next(iter(feeds[0]))
    amax = max(float(np.abs(f[x]).max()) for f in feeds)
    assert scales[x] == pytest.approx(amax / 127, rel=1e-6)
    assert len(scales) > 10 and all(s >= 0 for s in scales.values())
    assert ranges_to_cache(ranges, (8, 6, 1)) == cache  # deterministic: one shared cache


def test_profile_covers_every_feed_and_opt_is_the_common_shape():
    feeds = [{"x": np.zeros((8, 4))}, {"x": np.zeros((8, 4))}, {"x": np.zeros((2, 4))}]
    assert profile_shapes(feeds, {"x"}) == {"x": ((2, 4), (8, 4), (8, 4))}
    with pytest.raises(ValueError, match="no feed"):
        profile_shapes(feeds, {"y"})
    with pytest.raises(ValueError, match="ranks"):
        profile_shapes([{"x": np.zeros(3)}, {"x": np.zeros((3, 1))}], {"x"})


def test_switchboard_mask_is_bound_in_the_engine_dtype(planted):
    model, searchable = planted
    board = build_switchboard(model, searchable, "fp16", emulate=False)
    feed = {**random_feeds(input_specs(model), {}, seed=0, samples=1)[0],
            board.plan_input: board.mask({searchable[1]})}
    x = next(n for n in feed if n != board.plan_input)
    bound = bind_feed(feed, {x: np.dtype(np.float32), board.plan_input: np.dtype(bool)})
    assert bound[board.plan_input].dtype == bool
    assert bound[board.plan_input].tolist() == [n == searchable[1] for n in searchable]
    assert bound[x].flags["C_CONTIGUOUS"]
    with pytest.raises(ValueError, match="not fed"):
        bind_feed({x: feed[x]}, {board.plan_input: np.dtype(np.int32)})
