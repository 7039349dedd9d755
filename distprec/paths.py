"""Output paths checked before any work: never onto an input, another output or a device.

A search runs for hours; an output that lands on the model (``-o model.onnx``), on another
output (``-o`` equal to ``--save-model``) or on a device (``-o /dev/null`` as root) must be
refused before it starts, with one line.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

from distprec.errors import InputError


def _same(a: str, b: str) -> bool:
    try:
        if os.path.exists(a) and os.path.exists(b):
            return os.path.samefile(a, b)
    except OSError:
        pass
    return os.path.realpath(a) == os.path.realpath(b)


def _file_part(path: str) -> str:
    """FILE.py:FUNC names a file and a function; the file is the input."""
    head, sep, tail = path.rpartition(":")
    return head if sep and head.endswith(".py") and tail.isidentifier() else path


def check_outputs(outputs: Mapping[str, str | None], inputs: Mapping[str, str | None]) -> None:
    """Refuse an output that is an input, another output, or an existing non-regular file.

    ``outputs`` and ``inputs`` map each flag to its path (None: not given).
    """
    given_out = [(flag, str(p)) for flag, p in outputs.items() if p]
    given_in = [(flag, _file_part(str(p))) for flag, p in inputs.items() if p]
    for i, (flag, path) in enumerate(given_out):
        p = Path(path)
        if p.exists() and not p.is_file():
            kind = "a folder" if p.is_dir() else "not a regular file"
            raise InputError(f"{flag} {path}: exists and is {kind}; give a file path")
        for other, src in given_in:
            if _same(path, src):
                raise InputError(f"{flag} {path} is the {other} input: it would be "
                                 "overwritten; give another output path")
        for other, dest in given_out[i + 1:]:
            if _same(path, dest):
                raise InputError(f"{flag} and {other} are the same file ({path}): give "
                                 "each output its own path")
