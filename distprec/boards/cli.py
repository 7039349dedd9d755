"""``search --inventory``: which boards a search runs on, refused before Ray starts."""

from __future__ import annotations

from distprec.boards.inventory import Board, load_inventory
from distprec.devices import KINDS, profile
from distprec.errors import InputError


def board_route(cfg, inventory: str, kind: str | None, wait: float) -> dict:
    """run_search's arguments for the inventory's boards (of ``kind`` when given)."""
    if kind is not None and kind not in KINDS:
        raise InputError(f"unknown --kind {kind!r} (choose from {', '.join(KINDS)})")
    if cfg.backend != "ort":
        raise InputError("--inventory: each board's runtime is set in the inventory "
                         "(runtime: ort, trt or trtexec); leave --backend at ort")
    boards: list[Board] = load_inventory(inventory)
    if kind is not None:
        boards = [b for b in boards if b.kind == kind]
        if not boards:
            raise InputError(f"{inventory}: no board of kind {kind!r}")
    for b in boards:
        why = profile(b.kind).why_not(cfg.precision)
        if why:
            raise InputError(f"board {b.name}: {why}")
    if cfg.workers is not None and cfg.workers != len(boards):
        raise InputError(f"--workers {cfg.workers}: with --inventory there is one evaluator "
                         f"per board ({len(boards)})")
    cfg.device = "cpu" if cfg.device == "auto" else cfg.device  # the driver's own runs
    return {"boards": boards, "wait": wait}
