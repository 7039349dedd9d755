"""Output paths checked before any work: never onto an input, another output or a device.

A search runs for hours; an output that lands on the model (``-o model.onnx``), on another
output (``-o`` equal to ``--save-model``) or on a device (``-o /dev/null`` as root) must be
refused before it starts, with one line.
"""

from __future__ import annotations

import os
import tempfile
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


def _folder_writable(folder: Path) -> bool:
    """Whether a file can be made in ``folder``: tried for real, not guessed from its mode.

    ``os.access`` says yes to root on a 0555 folder (rightly) but cannot see every refusal
    (an NFS server's root squash, some ACLs); an unnamed temporary file (O_TMPFILE where
    the kernel has it) leaves nothing behind, even if the process dies here.
    """
    try:
        with tempfile.TemporaryFile(dir=folder):
            return True
    except OSError:
        return False


def check_writable(flag: str, path: str | None, append: bool = False) -> None:
    """Refuse an output that cannot be written, before Ray starts and before any work.

    The folder (or its nearest existing ancestor: missing folders are made) must take new
    files; with ``append`` (a journal, a log), an existing file must also take appends.
    The line names the user's path, not a temporary file next to it (issue 26).
    """
    if not path:
        return
    p = Path(path)
    if p.is_dir():
        raise InputError(f"{flag} {path}: exists and is a folder; give a file path")
    parent = p.parent
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    if not parent.is_dir() or not _folder_writable(parent):
        raise InputError(f"cannot write {flag} {path}: {parent} is not a writable folder")
    if append and p.is_file():
        try:
            with open(p, "ab"):  # no byte written, no mtime changed
                pass
        except OSError as exc:
            raise InputError(f"cannot write {flag} {path}: {exc.strerror or exc}") from None
