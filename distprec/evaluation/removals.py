"""The removals path: an answer's single removals judged on the answer's own switchboard.

Showing that an answer of k FP32 layers is 1-minimal takes its k single removals, and as
candidates each is a session: a fresh CUDA session's first run cost 0.3 to 0.75 s on an
H100 even under HEURISTIC kernels, seconds under EXHAUSTIVE (docs/BENCHMARKS.md), so a
171-layer answer took minutes to confirm. Here the answer's candidate, the model
``--save-model`` writes, becomes a switchboard whose only switchable layers are the
answer's own: one session, then one run a removal.

Everything but those k layers is the candidate's own graph, fusions included, where the
search's switchboard stops fusions at every layer. What differs from a removal's candidate
is the one layer switched: its low copy runs beside its FP32 one and does not fuse with its
neighbours. So its verdicts screen the removals (distprec/confirm.py): a removal that fails
here failed on the deployed model but for that layer, and one that passes is run as a
candidate, whose verdict stands.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from distprec.evaluation.base import Evaluation, Path
from distprec.evaluation.candidate import CandidatePath
from distprec.evaluation.switchboard import SwitchboardPath
from distprec.strategies.base import Keep

VIA = "answer_switchboard"


@dataclass(frozen=True)
class Removals:
    """``via`` for plans judged on the switchboard of ``answer``'s own candidate."""

    answer: Keep


class RemovalsPath(Path):
    """The switchboard of one answer's candidate, judging plans that keep a subset of the
    answer; other plans are errors, never verdicts. Its plans are judged once each, so
    nothing is timed (``cost_s`` None) and a call takes them all (actors/loop.py)."""

    name = VIA

    def __init__(self, candidates: CandidatePath, answer: Keep) -> None:
        self.answer = frozenset(answer)
        self.judge = candidates.judge
        self.board = SwitchboardPath(
            candidates.candidate(self.answer), sorted(self.answer), candidates.precision,
            candidates.backend, candidates.judge, candidates.feeds, candidates.emulate,
            candidates.ranges_json, want_per_run=1)
        self.board.name = VIA
        self.board.plain()

    @property
    def cost_s(self) -> float | None:
        return None

    def evaluate(self, keeps: Sequence[Keep]) -> list[Evaluation]:
        inside = [k for k in keeps if k <= self.answer]
        judged = iter(self.board.evaluate(inside))
        return [next(judged) if k <= self.answer else
                failed(self.judge, k, "not a subset of the answer this switchboard holds")
                for k in keeps]


def failed(judge, keep: Keep, why: str) -> Evaluation:
    """An error evaluation of ``keep`` through this path: no verdict."""
    ev = judge.new(keep, VIA)
    ev.reason = why
    ev.end = ev.start
    return ev
