"""Archives with absurd headers or sizes are refused before decompression (issue 13)."""

from __future__ import annotations

import io
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
from numpy.lib import format as npy

from distprec.errors import InputError
from distprec.npzsafe import read_npz

ROOT = Path(__file__).parents[1]


def _member(zf: zipfile.ZipFile, name: str, header: dict, body: bytes = b"",
            zeros: int = 0) -> None:
    """A .npy member written by hand: any header, then ``body`` and ``zeros`` zero bytes."""
    buf = io.BytesIO()
    npy.write_array_header_1_0(buf, header)
    with zf.open(name, "w", force_zip64=True) as f:
        f.write(buf.getvalue() + body)
        chunk = bytes(1 << 20)
        for _ in range(zeros >> 20):
            f.write(chunk)


def test_a_header_that_claims_more_than_the_member_holds(tmp_path):
    path = tmp_path / "liar.npz"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        _member(zf, "x.npy", {"descr": "<f4", "fortran_order": False,
                              "shape": (10 ** 6, 10 ** 6)}, body=bytes(16))
    with pytest.raises(InputError, match=r"'x' claims shape \(1000000, 1000000\)"):
        read_npz(path)


def test_object_arrays_and_foreign_members_are_refused_unread(tmp_path):
    path = tmp_path / "obj.npz"
    np.savez(path, x=np.array([{"a": 1}], dtype=object))
    with pytest.raises(InputError, match="Python objects"):
        read_npz(path)
    other = tmp_path / "other.npz"
    with zipfile.ZipFile(other, "w") as zf:
        zf.writestr("x.pkl", b"cos\nsystem\n")
    with pytest.raises(InputError, match="not a .npy array"):
        read_npz(other)
    with pytest.raises(InputError, match="cannot read"):
        read_npz(tmp_path / "obj.npz.missing")
    (tmp_path / "text.npz").write_text("hello")
    with pytest.raises(InputError, match="cannot read"):
        read_npz(tmp_path / "text.npz")


def test_a_zip_bomb_is_refused_in_bounded_memory(tmp_path):
    """512 MiB of zeros in a ~0.5 MB archive, over a 64 MiB bound: the driver's peak memory
    stays far under the array's size (np.load alone would decompress it whole)."""
    path = tmp_path / "bomb.npz"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as zf:
        _member(zf, "x.npy", {"descr": "<f4", "fortran_order": False, "shape": (1 << 27,)},
                zeros=512 << 20)
    assert path.stat().st_size < 8 << 20
    code = ("import resource, sys\nfrom distprec.errors import InputError\n"
            "from distprec.npzsafe import read_npz\n"
            "print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)\n"
            f"try:\n    read_npz({str(path)!r})\nexcept InputError as e:\n    print(e)\n"
            "print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)\n")
    env = {**os.environ, "PYTHONPATH": str(ROOT), "DISTPREC_MAX_DATA_BYTES": str(64 << 20)}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                         text=True, timeout=120, check=True).stdout.splitlines()
    assert "over the bound" in out[1] and "DISTPREC_MAX_DATA_BYTES" in out[1]
    # peak KiB added by reading (imports excluded): far under the 512 MiB the archive holds
    assert int(out[2]) - int(out[0]) < 100_000


def test_good_archives_still_load(tmp_path):
    path = tmp_path / "ok.npz"
    np.savez_compressed(path, a=np.arange(6, dtype=np.float32).reshape(2, 3), s=np.array("h"))
    arrays = read_npz(path)
    assert arrays["a"].shape == (2, 3) and str(arrays["s"]) == "h"
