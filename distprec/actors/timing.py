"""TensorRT timing caches shared by a search's evaluator actors through the object store.

Each actor puts its timing cache after a build; before its next build it merges the
caches other actors put since it last looked, so kernel timings measured once serve
every actor (TensorRT's ITimingCache.combine does the merge, in the actor that has
TensorRT). The store only holds bytes, so it runs on any node.
"""

from __future__ import annotations

import hashlib

import ray


@ray.remote(num_cpus=0, max_restarts=0)
class TimingCaches:
    """The latest timing cache of each worker, and a version counter that says what is new."""

    def __init__(self) -> None:
        self.blobs: dict[str, bytes] = {}
        self.changed: dict[str, int] = {}
        self.version = 0

    def put(self, worker: str, blob: bytes) -> int:
        self.version += 1
        self.blobs[worker], self.changed[worker] = blob, self.version
        return self.version

    def since(self, version: int, worker: str) -> tuple[int, list[bytes]]:
        """(current version, other workers' caches changed after ``version``)."""
        return self.version, [b for w, b in sorted(self.blobs.items())
                              if w != worker and self.changed[w] > version]


def store_name(model_bytes: bytes, gpu: str, trt_version: str) -> str:
    """One store per model, GPU model and TensorRT version (timings hold for those only);
    the actors of a search find it by name."""
    key = hashlib.sha256(model_bytes + f"|{gpu}|{trt_version}".encode()).hexdigest()[:16]
    return f"distprec-timing-{key}"


class TimingShare:
    """An actor's side of the store: pull before a build, push after it."""

    def __init__(self, store, worker: str) -> None:
        self.store, self.worker, self.seen = store, worker, 0

    @classmethod
    def for_search(cls, name: str, worker: str) -> TimingShare:
        store = TimingCaches.options(name=name, get_if_exists=True).remote()
        return cls(store, worker)

    def pull(self) -> list[bytes]:
        self.seen, blobs = ray.get(self.store.since.remote(self.seen, self.worker))
        return blobs

    def push(self, blob: bytes):
        """Returns the put's reference; a build never waits on it."""
        return self.store.put.remote(self.worker, blob)
