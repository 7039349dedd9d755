"""The verdict journal: every verdict appended and fsynced as it arrives, for ``--resume``.

A driver killed mid-search (SIGKILL, a lost node, a closed laptop) loses only the plans
that were in flight: a rerun with ``--resume`` replays the journaled verdicts into the
strategy (``strategies.replay.Replay``) and evaluates only the rest. Polygraphy users know
this as debug replay files.

JSON Lines: a header naming what the verdicts depend on (the model, precision, check,
inputs, golden outputs, calibration and how verdicts were made), then one verdict a line.
The strategy is not in the key: a verdict is a fact about a plan, so a journal can be
resumed by another strategy. A line cut short by a kill (the last one) is skipped.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from pathlib import Path
from typing import IO, Any

import numpy as np

from distprec.atomic import json_safe, write_text
from distprec.errors import InputError
from distprec.evaluator import Evaluation
from distprec.strategies.base import Info, Keep, Verdict

FORMAT = "distprec-journal/1"
Known = dict[Keep, tuple[Verdict, Info]]


def _digest_feeds(feeds) -> str:
    h = hashlib.sha256()
    for feed in feeds:
        for name in sorted(feed):
            a = np.ascontiguousarray(feed[name])
            h.update(f"{name}|{a.dtype}|{a.shape}|".encode())
            h.update(a.tobytes())
    return h.hexdigest()[:16]


def search_key(cfg, prep) -> dict[str, Any]:
    """What a verdict depends on; a journal is resumed only under an equal key."""
    return {
        "model_hash": prep.source_hash,
        "precision": cfg.precision,
        "check": json_safe(dataclasses.asdict(cfg.check)),
        "inputs": _digest_feeds(prep.feeds),
        "golden": _digest_feeds(prep.golden),
        "calibration": hashlib.sha256((prep.ranges_json or "").encode()).hexdigest()[:16],
        "evaluate": cfg.evaluate,
    }


def _floats(obj: Any) -> Any:
    """Undo ``json_safe``: figures written as "nan"/"inf" strings are floats again."""
    if isinstance(obj, str) and obj in ("nan", "inf", "-inf"):
        return float(obj)
    if isinstance(obj, dict):
        return {k: _floats(v) for k, v in obj.items()}
    return obj


class Journal:
    """Appends verdicts; ``known`` holds the verdicts of the search being resumed."""

    def __init__(self, path: str | os.PathLike, key: dict[str, Any], resume: bool) -> None:
        self.path = Path(path)
        self.key = key
        self.entries: list[dict[str, Any]] = []
        if resume:
            self.entries = self._read()
            try:  # appends must work before any plan is evaluated, not at the first verdict
                with open(self.path, "ab"):
                    pass
            except OSError as exc:
                raise InputError(f"--resume: cannot append to {self.path}: "
                                 f"{exc.strerror or exc}") from None
        else:
            write_text(self.path, json.dumps({"format": FORMAT, "key": key}) + "\n")
        self._file: IO[str] | None = None  # opened by the first record: reading holds none
        self._closed = False

    def _read(self) -> list[dict[str, Any]]:
        if not self.path.is_file():
            raise InputError(f"--resume: no journal at {self.path} (give --journal FILE)")
        lines = self.path.read_text(encoding="utf-8", errors="replace").splitlines()
        try:
            header = json.loads(lines[0]) if lines else {}
        except json.JSONDecodeError:
            header = {}
        if header.get("format") != FORMAT or not isinstance(header.get("key"), dict):
            raise InputError(f"{self.path}: not a distprec journal")
        diff = [k for k in self.key if header["key"].get(k) != self.key[k]]
        if diff:
            raise InputError(f"{self.path}: journal of another search ({', '.join(diff)} "
                             "differ); resume with the same model and settings, or drop --resume")
        entries = []
        for i, line in enumerate(lines[1:], 2):
            try:
                entry = json.loads(line)
                frozenset(entry["keep"]), Verdict(entry["verdict"])
            except (json.JSONDecodeError, KeyError, TypeError, ValueError):
                if i == len(lines):  # the line a kill cut short
                    break
                raise InputError(f"{self.path}:{i}: malformed journal line") from None
            entries.append(entry)
        data = self.path.read_bytes()
        if data and not data.endswith(b"\n"):  # drop a cut line, so appends start clean
            os.truncate(self.path, data.rfind(b"\n") + 1)
        return entries

    def known(self, via: str | None = None) -> Known:
        """Journaled verdicts (of one ``via``, when given), by keep-set; the last one wins."""
        out: Known = {}
        for e in self.entries:
            if via is None or e.get("via", "candidate") == via:
                out[frozenset(e["keep"])] = (Verdict(e["verdict"]),
                                             Info(_floats(e.get("figures") or {}),
                                                  _floats(e["profile"]) if e.get("profile")
                                                  else None))
        return out

    def record(self, ev: Evaluation) -> None:
        """One line, flushed and fsynced before the verdict counts as kept."""
        if self._closed:
            return
        if self._file is None:
            self._file = open(self.path, "a", encoding="utf-8")  # noqa: SIM115
        line = json.dumps(json_safe({"keep": sorted(ev.keep), "verdict": ev.verdict.value,
                                     "via": ev.via, "figures": ev.figures,
                                     "profile": ev.layer_errors, "reason": ev.reason,
                                     "worker": ev.worker}), allow_nan=False)
        self._file.write(line + "\n")
        self._file.flush()
        os.fsync(self._file.fileno())

    def close(self) -> None:
        self._closed = True
        if self._file is not None:
            self._file.close()
            self._file = None


def tap(journal: Journal, on_event):
    """An event sink that journals every verdict, then passes the event on."""
    def sink(kind: str, data: dict) -> None:
        if kind == "done":
            journal.record(data["evaluation"])
        if on_event:
            on_event(kind, data)
    return sink


def refuse_overwrite(path: str | os.PathLike, output: str | os.PathLike) -> None:
    """Without ``--resume``, a journal is started afresh only where nothing is lost.

    Refused, with one line: a file there that is not a distprec journal, and a journal
    holding verdicts whose search did not complete (no result at ``output`` saying
    ``"complete": true`` for this journal): rerunning a killed search without
    ``--resume`` would throw its verdicts away. A completed search's journal is replaced:
    its result holds every verdict (its history).
    """
    journal = Path(path)
    if not journal.exists():
        return
    try:
        with open(journal, encoding="utf-8", errors="replace") as f:
            header = json.loads(f.readline() or "{}")
            verdicts = sum(1 for line in f if line.strip())
    except (OSError, json.JSONDecodeError):
        header, verdicts = {}, 0
    if not isinstance(header, dict) or header.get("format") != FORMAT:
        raise InputError(f"{journal} exists and is not a distprec journal: give another "
                         "--journal (or -o)")
    if not verdicts or _completed(Path(output), journal):
        return
    raise InputError(f"{journal} holds {verdicts} verdict(s) of a search that did not "
                     "complete: continue it with --resume, or give a new -o (or --journal)")


def _completed(output: Path, journal: Path) -> bool:
    try:
        result = json.loads(output.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return (isinstance(result, dict) and result.get("complete") is True
            and isinstance(result.get("journal"), str)
            and Path(result["journal"]).resolve() == journal.resolve())
