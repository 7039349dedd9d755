"""Without --resume, a killed search's journal is never silently overwritten (issue 13)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from distprec.errors import InputError
from distprec.evaluator import Evaluation
from distprec.journal import Journal, refuse_overwrite
from distprec.strategies.base import Verdict

ROOT = Path(__file__).parents[1]
KEY = {"model_hash": "abc", "precision": "fp16"}


def _journal(path: Path, verdicts: int) -> None:
    j = Journal(path, KEY, resume=False)
    for i in range(verdicts):
        j.record(Evaluation(frozenset({f"l{i}"}), Verdict.PASS))
    j.close()


def test_what_may_be_replaced(tmp_path):
    journal, out = tmp_path / "r.journal.jsonl", tmp_path / "r.json"
    refuse_overwrite(journal, out)  # none yet
    _journal(journal, 0)
    refuse_overwrite(journal, out)  # a header alone loses nothing
    _journal(journal, 2)
    with pytest.raises(InputError, match="2 verdict\\(s\\) of a search that did not complete"):
        refuse_overwrite(journal, out)
    out.write_text(json.dumps({"complete": False, "journal": str(journal)}))
    with pytest.raises(InputError, match="--resume"):
        refuse_overwrite(journal, out)  # a partial result (SIGTERM): still resumable
    out.write_text(json.dumps({"complete": True, "journal": str(tmp_path / "other.jsonl")}))
    with pytest.raises(InputError):
        refuse_overwrite(journal, out)  # a result of another journal says nothing of this
    out.write_text(json.dumps({"complete": True, "journal": str(journal)}))
    refuse_overwrite(journal, out)  # finished: its result holds every verdict
    notes = tmp_path / "notes.txt"
    notes.write_text("my notes\n")
    with pytest.raises(InputError, match="not a distprec journal"):
        refuse_overwrite(notes, out)
