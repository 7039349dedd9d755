"""The shape of a result.json, checked before ``report`` draws it (issue 13).

A hand-edited or truncated result (a history entry that is a number, a size that is a
word) would otherwise end the report in a traceback halfway through its figures. Only
the fields the report reads are checked; unknown fields are left alone.
"""

from __future__ import annotations

from collections.abc import Mapping
from numbers import Real
from typing import Any

from distprec.errors import InputError

#: top-level fields and the JSON type each must have when present
FIELDS: dict[str, type | tuple[type, ...]] = {
    "history": list, "high_precision_layers": list, "layer_errors": (dict, type(None)),
    "environment": dict, "exports": list, "worker_nodes": dict, "notes": list,
    "faults": dict, "passed": bool, "model": str,
}
#: fields of one history entry
ENTRY: dict[str, type | tuple[type, ...]] = {
    "keep": list, "size": int, "verdict": str, "worker": (str, type(None)),
    "t_start": (Real, type(None)), "t_end": (Real, type(None)),
    "errors": (dict, type(None)), "via": str,
}
_NAMES = {list: "a list", dict: "an object", str: "a string", int: "an integer",
          bool: "true or false", Real: "a number"}


def _want(kind) -> str:
    kinds = kind if isinstance(kind, tuple) else (kind,)
    return " or ".join(_NAMES.get(k, "null") for k in kinds)


def _ok(value: Any, kind) -> bool:
    kinds = kind if isinstance(kind, tuple) else (kind,)
    if isinstance(value, bool) and bool not in kinds:  # JSON true is not a number here
        return False
    return isinstance(value, kinds)


def check_result(result: Any, path: str) -> dict:
    """``result`` unchanged, or one line naming the first field of the wrong shape."""
    if not isinstance(result, dict) or not isinstance(result.get("history"), list):
        raise InputError(f"{path}: not a distprec result (no history list)")
    for field, kind in FIELDS.items():
        if field in result and not _ok(result[field], kind):
            raise InputError(f"{path}: malformed result: {field!r} must be {_want(kind)}")
    for name in result.get("high_precision_layers") or []:
        if not isinstance(name, str):
            raise InputError(f"{path}: malformed result: high_precision_layers holds "
                             f"{name!r}, not a layer name")
    for name, figures in (result.get("layer_errors") or {}).items():
        if not isinstance(figures, Mapping):
            raise InputError(f"{path}: malformed result: layer_errors[{name!r}] must be "
                             "an object")
    for i, entry in enumerate(result["history"]):
        if not isinstance(entry, dict):
            raise InputError(f"{path}: malformed result: history[{i}] must be an object")
        for field, kind in ENTRY.items():
            if field in entry and not _ok(entry[field], kind):
                raise InputError(f"{path}: malformed result: history[{i}].{field} must be "
                                 f"{_want(kind)}")
        for name, figures in (entry.get("errors") or {}).items():
            if not isinstance(figures, Mapping):
                raise InputError(f"{path}: malformed result: history[{i}].errors[{name!r}] "
                                 "must be an object")
    return result
