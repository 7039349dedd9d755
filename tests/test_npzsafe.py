"""Archives with absurd headers or sizes are refused before decompression (issue 13)."""

from __future__ import annotations

import io
import os
import struct
import subprocess
import sys
import zipfile
import zlib
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


def _zeros_member(path: Path, name: str, nbytes: int, chunk: int = 8 << 20) -> None:
    """An .npz of one member: ``nbytes`` zero bytes as a uint8 array, deflated.

    Written by hand in about a second: after a full flush deflate starts afresh, so one
    compressed chunk of zeros is repeated (zipfile would compress all 2 GiB, 6 s here).
    """
    buf = io.BytesIO()
    npy.write_array_header_1_0(buf, {"descr": "|u1", "fortran_order": False,
                                     "shape": (nbytes,)})
    head = buf.getvalue()
    z = zlib.compressobj(1, zlib.DEFLATED, -15)
    first = z.compress(head) + z.flush(zlib.Z_FULL_FLUSH)
    block = z.compress(bytes(chunk)) + z.flush(zlib.Z_FULL_FLUSH)
    assert z.compress(bytes(chunk)) + z.flush(zlib.Z_FULL_FLUSH) == block
    tail = z.flush(zlib.Z_FINISH)
    count = nbytes // chunk
    crc, zeros = zlib.crc32(head), bytes(chunk)
    for _ in range(count):
        crc = zlib.crc32(zeros, crc)
    size, packed = len(head) + count * chunk, len(first) + count * len(block) + len(tail)
    assert size < 1 << 32  # no zip64 fields needed
    fname = name.encode()
    with open(path, "wb") as f:
        f.write(struct.pack("<IHHHHHIIIHH", 0x04034B50, 20, 0, 8, 0, 0, crc, packed, size,
                            len(fname), 0) + fname + first)
        for _ in range(count):
            f.write(block)
        f.write(tail)
        directory = f.tell()
        f.write(struct.pack("<IHHHHHHIIIHHHHHII", 0x02014B50, 20, 20, 0, 8, 0, 0, crc, packed,
                            size, len(fname), 0, 0, 0, 0, 0, 0) + fname)
        f.write(struct.pack("<IHHHHIIH", 0x06054B50, 0, 0, 1, 1, f.tell() - directory,
                            directory, 0))


def test_an_array_under_an_unknown_name_is_never_read(tmp_path):
    """Issue 26: 2 GiB under a name the model does not take. The refusal was right, but the
    driver decompressed the array first (2148 MB peak); only the arrays the model's inputs
    name are read now. The real CLI, in a fresh process: its peak stays under 256 MB."""
    from distprec.demo import planted_mlp

    (tmp_path / "m.onnx").write_bytes(planted_mlp(blocks=2).model.SerializeToString())
    _zeros_member(tmp_path / "big.npz", "junk.npy", 2 << 30)
    assert zipfile.ZipFile(tmp_path / "big.npz").infolist()[0].file_size > 2 << 30
    # VmHWM, not ru_maxrss: Linux carries ru_maxrss across exec, so a child of a large
    # pytest process reported the parent's size (298 MB in a full run, 98 MB alone).
    code = ("import re\nfrom distprec.cli import main\n"
            "code = main(['golden', 'm.onnx', '--inputs', 'big.npz', '-o', 'g.npz'])\n"
            "status = open('/proc/self/status').read()\n"
            "print(code, re.search(r'VmHWM:\\s+(\\d+)', status).group(1))\n")
    proc = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True,
                          text=True, timeout=120, env={**os.environ, "PYTHONPATH": str(ROOT)})
    status, peak_kib = proc.stdout.split()
    assert status == "2", proc.stderr
    assert proc.stderr.strip() == ("distprec: error: big.npz: sample 0 has inputs ['junk'], "
                                   "the model takes ['input']")
    assert int(peak_kib) < 256 << 10, f"driver peak {int(peak_kib) >> 10} MB"
    assert not (tmp_path / "g.npz").exists()
    np.savez(tmp_path / "two.npz", input=np.zeros((8, 32), np.float32), extra=np.ones(3))
    arrays = read_npz(tmp_path / "two.npz", only=["input"])
    assert list(arrays) == ["input"]
