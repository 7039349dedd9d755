"""Bounded .npz reading: names, dtypes and shapes from the headers before any array is
decompressed (issue 13).

``np.load`` decompresses an array whole before its shape can be checked: a 1 MB archive of
zeros can claim gigabytes. Here each member's .npy header is read first (a few hundred
bytes of the stream); an archive is refused, with one line, when a header is not a .npy
header, names an object dtype (that would need unpickling), claims more bytes than the
member holds, or when the arrays together exceed the bound (first as the zip directory
declares their sizes, before anything is decompressed). Only the arrays a caller names
are read. Nothing is unpickled.
"""

from __future__ import annotations

import os
import zipfile
from collections.abc import Collection
from pathlib import Path

import numpy as np
from numpy.lib import format as npy

from distprec.errors import InputError

LIMIT_ENV = "DISTPREC_MAX_DATA_BYTES"


def data_limit() -> int:
    """Bytes all arrays of one file may take: ``DISTPREC_MAX_DATA_BYTES``, else half the
    physical memory (a search holds inputs and golden outputs, and copies some)."""
    text = os.environ.get(LIMIT_ENV)
    if text:
        try:
            return int(float(text))
        except ValueError:
            raise InputError(f"{LIMIT_ENV} must be a number of bytes, got {text!r}") from None
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // 2
    except (ValueError, OSError, AttributeError):
        return 8 << 30


def _header(stream) -> tuple[tuple[int, ...], bool, np.dtype]:
    version = npy.read_magic(stream)
    if version == (1, 0):
        return npy.read_array_header_1_0(stream)
    if version == (2, 0):
        return npy.read_array_header_2_0(stream)
    return npy._read_array_header(stream, version)  # 3.0: utf-8 field names


def npz_names(path: str | Path) -> list[str]:
    """The array names of an .npz, from its zip directory alone: nothing is decompressed."""
    with _open(path) as archive:
        return [_name(m, path) for m in archive.infolist() if not m.is_dir()]


def _open(path: str | Path) -> zipfile.ZipFile:
    try:
        return zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError) as exc:
        raise InputError(f"cannot read {path} as .npz: {exc}") from None


def _name(member: zipfile.ZipInfo, path) -> str:
    if not member.filename.endswith(".npy"):
        raise InputError(f"{path}: member {member.filename!r} is not a .npy array")
    return member.filename.removesuffix(".npy")


def read_npz(path: str | Path, limit: int | None = None,
             only: Collection[str] | None = None) -> dict[str, np.ndarray]:
    """The arrays of an .npz (those named in ``only``, when given), refused before
    decompression when their declared sizes or headers are bad.

    Every member's size as the zip directory declares it counts against ``limit`` before
    anything is decompressed; an array outside ``only`` is never read at all (a 2 GiB
    array under a name the model does not take cost 2 GiB of driver memory before its
    refusal; issue 26). A member's stream ends at its declared size, so the checks bound
    what reading can take.
    """
    limit = data_limit() if limit is None else limit
    with _open(path) as archive:
        members = [m for m in archive.infolist() if not m.is_dir()]
        declared = 0
        for member in members:
            _name(member, path)
            declared += member.file_size
            if declared > limit:
                raise InputError(f"{path}: arrays take {declared} bytes or more (as its zip "
                                 f"directory declares), over the bound of {limit} (set "
                                 f"{LIMIT_ENV} to raise it)")
        wanted = [m for m in members if only is None or _name(m, path) in only]
        for member in wanted:
            name = _name(member, path)
            try:
                with archive.open(member) as stream:
                    shape, _, dtype = _header(stream)
                    offset = stream.tell()
            except Exception as exc:  # noqa: BLE001 - any bad header is one refusal
                raise InputError(f"{path}: array {name!r} has no valid .npy header "
                                 f"({type(exc).__name__}: {exc})") from None
            if dtype.hasobject:
                raise InputError(f"{path}: array {name!r} holds Python objects (dtype "
                                 f"{dtype}); distprec never unpickles user files")
            size = dtype.itemsize * int(np.prod(shape, dtype=object))
            if offset + size != member.file_size:
                raise InputError(f"{path}: array {name!r} claims shape {shape} of {dtype} "
                                 f"({size} bytes) but holds {member.file_size - offset}")
        names = [_name(m, path) for m in wanted]
    try:
        with np.load(path, allow_pickle=False) as npz:
            return {k: npz[k] for k in names}
    except Exception as exc:  # noqa: BLE001
        raise InputError(f"cannot read {path} as .npz: {type(exc).__name__}: {exc}") from None
