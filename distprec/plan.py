"""A precision plan: the target precision and the layers kept in FP32."""

from __future__ import annotations

from dataclasses import dataclass

PRECISIONS = ("fp16", "bf16", "int8")


def plan_id(keep) -> str:
    """A short name for a keep-set, the same in log lines and result.json's history on
    every host: the first 8 hex digits of SHA-1 over its sorted names."""
    import hashlib

    return hashlib.sha1("\n".join(sorted(keep)).encode()).hexdigest()[:8]


@dataclass(frozen=True)
class Plan:
    precision: str
    keep: frozenset[str]  # layer (node) names kept in FP32; every other searchable layer is low

    def __post_init__(self) -> None:
        if self.precision not in PRECISIONS:
            raise ValueError(f"unknown precision {self.precision!r}")
