"""The shared timing-cache store: each actor gets the others' new caches, never its own."""

from __future__ import annotations

import ray

from distprec.actors.timing import TimingShare, store_name


def test_actors_pull_only_what_others_pushed_since(ray_session):
    name = store_name(b"model", "NVIDIA H200", "10.3.0")
    a = TimingShare.for_search(name, "w0")
    b = TimingShare.for_search(name, "w1")  # the same store, found by name
    assert a.pull() == [] and b.pull() == []
    ray.get(a.push(b"cache-a1"))
    assert b.pull() == [b"cache-a1"]
    assert b.pull() == []  # nothing new since
    assert a.pull() == []  # never its own
    ray.get(b.push(b"cache-b1"))
    ray.get(a.push(b"cache-a2"))
    assert a.pull() == [b"cache-b1"]
    assert b.pull() == [b"cache-a2"]


def test_stores_are_per_model_gpu_and_version():
    names = {store_name(b"m", "H200", "10.3.0"), store_name(b"m", "Orin", "10.3.0"),
             store_name(b"m", "H200", "8.6.1"), store_name(b"n", "H200", "10.3.0")}
    assert len(names) == 4
