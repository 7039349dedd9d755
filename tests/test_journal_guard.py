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


def test_one_search_per_output_and_a_dead_ones_lock_is_taken_over(tmp_path):
    """Issue 26: a second search with the same output replaced the first one's journal.
    The lock beside it names the live holder's PID; a SIGKILLed holder's lock file stays,
    and is taken over (the kernel dropped its flock); a search that ends removes it."""
    import os
    import subprocess
    import sys

    from distprec import outlock

    journal = tmp_path / "r.journal.jsonl"
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True).stdout.strip()
    outlock.lock_path(journal).write_text(f"{dead}\n")  # a killed search's lock file
    code = ("import sys, time\nfrom distprec import outlock\n"
            "outlock.hold({'--journal': sys.argv[1]})\nprint('held', flush=True)\n"
            "time.sleep(60)\n")
    holder = subprocess.Popen([sys.executable, "-c", code, str(journal)], text=True,
                              stdout=subprocess.PIPE, env={**os.environ,
                                                           "PYTHONPATH": str(ROOT)})
    try:
        assert holder.stdout.readline().strip() == "held"
        assert outlock.lock_path(journal).read_text().strip() == str(holder.pid)
        with pytest.raises(InputError, match=f"another search \\(PID {holder.pid}\\) is "
                           f"writing {journal}"):
            outlock.hold({"-o": str(tmp_path / "r.json"), "--journal": str(journal)})
        assert not outlock.lock_path(tmp_path / "r.json").exists()  # all or nothing
    finally:
        holder.kill()
        holder.wait()
    outlock.hold({"--journal": str(journal)})  # its holder was SIGKILLed: free again
    try:
        assert outlock.lock_path(journal).read_text().strip() == str(os.getpid())
    finally:
        outlock.release()
    assert not outlock.lock_path(journal).exists()
