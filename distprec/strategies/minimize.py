"""Minimize: shrink a passing keep-set to a 1-minimal one, by delta debugging run speculatively.

Prefix searches (bisect, linear) can only keep a contiguous run of layers in FP32; when
the troublesome layers are spread out, their answer keeps most of the network high. This
search starts from any passing keep-set (all layers, or another strategy's answer) and
removes layers from it, in the manner of Zeller's ddmin as Hypothesis's shrinker runs it:

- The current set is cut into chunks (contiguous in layer order, since neighbouring layers
  tend to be needed or not together). Level 0 is one chunk, the whole set: removing it is
  the cheap first guess, all-low. Each later level halves the chunks that survived.
- Sequentially, each chunk's removal is tried once, from the current set; a removal that
  passes is kept at once, so the next try starts from the smaller set.
- When every chunk is a single layer, passes over the single layers repeat until one
  removes nothing: then every single-layer removal of the final set was evaluated and
  failed, and the answer is reported ``1-minimal``.

W workers run that sequential path speculatively, as a processor predicts branches: a
batch is the next W tries along the path on which every verdict is the predicted one
(each try starts from the set the earlier tries would leave). When the verdicts are in,
the batch is committed in order up to and including the first mispredicted try, whose
own verdict is real; the tries after it were made from the wrong set and are asked again
from the right one. So the answer is exactly the one W = 1 finds, W only makes it sooner,
and every batch commits at least one try. The prediction is the more frequent verdict of
the level so far (coarse levels of a sparse set mostly pass, single layers mostly fail).
An earlier version tried W removals from the same set and kept their union; its answers
grew with W (31 layers at W = 1, 45 at W = 4 on the 412-layer planted model under the CPU
emulation, where FP16 noise makes verdicts non-monotonic) for 20 % fewer rounds.

Rules that make it terminate on any oracle (flaky, non-monotonic, adversarial): a keep-set
is never evaluated twice (a verdict already told is reused); the current set only ever
shrinks; within a level every chunk is tried once before the level changes; and a new
pass over the single layers starts only after the previous one removed something. So the
number of tries is bounded by a polynomial of the start size. Progress is deterministic: a
batch is decided only when all of its verdicts are in, never by arrival order.

With monotone verdicts and k needed layers among m, a level holds at most 2k chunks, so
the search costs O(k log m) evaluations (bench/strategies.py measures it).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from distprec.strategies.base import Keep, Outcome, Strategy, Verdict

START = -1  # batch slot of the start plan (judged with the first tries), not a chunk


@dataclass(frozen=True)
class Try:
    keep: Keep
    chunk: int  # index into ``chunks``, or START
    predicted: bool  # the verdict the rest of the batch assumed


class Minimize(Strategy):
    name = "minimize"

    def __init__(self, layers: Sequence[str], start: Iterable[str] | None = None,
                 budget: int | None = None) -> None:
        super().__init__(layers)
        self.order = {name: i for i, name in enumerate(self.layers)}
        start = frozenset(self.layers if start is None else start)
        unknown = start - set(self.layers)
        if unknown:
            raise ValueError(f"start names {len(unknown)} unknown layer(s), e.g. "
                             f"{sorted(unknown)[0]!r}")
        if budget is not None and budget < 1:
            raise ValueError("budget must be at least 1")
        self.start, self.budget = start, budget
        self.cur: Keep | None = None  # confirmed passing (None until the start is judged)
        self.chunks: list[tuple[str, ...]] = [self._sorted(start)] if start else []
        self.queue: list[int] = list(range(len(self.chunks)))
        self.level = 0
        self.removed_in_pass = False
        self.sibling: dict[int, int] = {}  # second half -> first half of the same chunk
        self.outcome: dict[int, bool] = {}  # chunk -> committed verdict of its removal
        # context -> [failed, passed] removals; the start is the prior (see _predict)
        self.seen = {"alone": [4, 0], "after-pass": [4, 0], "after-fail": [0, 4]}
        self.batch: list[Try] = []
        self.finished = False

    # -- the protocol ---------------------------------------------------------------------
    @property
    def done(self) -> bool:
        return self.finished

    def _propose(self, n: int) -> list[Keep]:
        if not self.batch:
            self._form(n)
        return [t.keep for t in self.batch
                if t.keep not in self.told and t.keep not in self.pending]

    def _update(self, keep: Keep, verdict: Verdict) -> None:
        if verdict is Verdict.ERROR:
            self.note("some plans did not build or run: counted as not passing")
        if self.batch and all(t.keep in self.told for t in self.batch):
            self._close()

    def result(self) -> Outcome:
        if self.cur is None:
            return Outcome(False, None, "none", tuple(self.notes))
        singles = [self.told.get(self.cur - {x}) for x in self.cur]
        proved = all(v is not None and not v.passed for v in singles)
        notes = list(self.notes)
        errors = sum(v is Verdict.ERROR for v in singles)
        if errors:
            notes.append(f"{errors} single-layer removal(s) did not build or run; "
                         "1-minimality counts them as failing")
        if not proved:
            untested = sum(v is None for v in singles)
            notes.append(f"not proved 1-minimal: {untested} single-layer removal(s) "
                         "not evaluated")
        return Outcome(True, self.cur, "1-minimal" if proved else "none", tuple(notes))

    def status(self) -> dict[str, object]:
        return {"level": self.level, "chunk": max(map(len, self.chunks), default=0),
                "kept": len(self.cur) if self.cur is not None else len(self.start),
                "left": len(self.queue)}

    # -- batches ----------------------------------------------------------------------------
    def _form(self, n: int) -> None:
        """The next W tries along the predicted path; known verdicts are reused, not asked."""
        while not self.finished and not self.batch:
            if self.budget is not None and len(self.told) >= self.budget:
                self.note(f"stopped at the budget of {self.budget} evaluations")
                self.finished = True
                return
            if self.cur is not None and not self.queue and not self._next_level():
                self.finished = True
                return
            base = self.start if self.cur is None else self.cur
            batch = [Try(base, START, True)] if self.cur is None else []
            path: dict[int, bool] = {}  # chunk -> the verdict this batch assumes
            used = 0  # queue entries taken (chunks emptied by earlier removals are skipped)
            # A batch stops at the level's end: the next level depends on its verdicts.
            for i in self.queue:
                if len(batch) >= max(n, 1):
                    break
                used += 1
                chunk = base.intersection(self.chunks[i])
                if chunk:
                    path[i] = predict = self._predict(i, path)
                    batch.append(Try(base - chunk, i, predict))
                    base = base - chunk if predict else base
            self.queue = self.queue[used:]
            self.batch = batch
            if all(t.keep in self.told for t in batch):
                self._close()

    def _close(self) -> None:
        """Commit the batch in order up to its first misprediction; ask the rest again."""
        batch, self.batch = self.batch, []
        for pos, t in enumerate(batch):
            passed = self.told[t.keep].passed
            if t.chunk == START:
                if passed:
                    self.cur = t.keep
                    continue
                self._start_failed([u.keep for u in batch[1:] if self.told[u.keep].passed])
                return
            self.seen[self._context(t.chunk, {})][passed] += 1
            self.outcome[t.chunk] = passed
            if passed:
                self.cur = t.keep
                self.removed_in_pass = True
            if passed != t.predicted:
                self.queue = [u.chunk for u in batch[pos + 1:]] + self.queue
                return

    def _context(self, i: int, path: dict[int, bool]) -> str:
        """What is known before chunk ``i`` is tried: its first half sibling's verdict."""
        first = self.sibling.get(i)
        known = path.get(first, self.outcome.get(first)) if first is not None else None
        return "alone" if known is None else "after-pass" if known else "after-fail"

    def _predict(self, i: int, path: dict[int, bool]) -> bool:
        """Whether removing chunk ``i`` will pass: the majority so far in its context.

        With monotone verdicts a surviving chunk holds a needed layer, so when the first
        half's removal passed the second's fails, and when it failed the second's likely
        passes; other tries (first halves, single layers) mostly fail. These are the
        priors; when FP16 noise makes verdicts non-monotonic, the counts take over.
        """
        failed, passed = self.seen[self._context(i, path)]
        return passed > failed

    def _start_failed(self, passing: list[Keep]) -> None:
        if not passing:
            self.note("the start plan fails: nothing to shrink")
            self.finished = True
            return
        self.note("non-monotonic: the start plan fails, a smaller plan passes")
        self.cur = passing[0]
        self.queue = list(range(len(self.chunks)))
        self.removed_in_pass = True

    def _next_level(self) -> bool:
        """Halve the surviving chunks; False when the search is over."""
        live = [c for c in (tuple(x for x in chunk if x in self.cur) for chunk in self.chunks)
                if c]
        if not live:
            return False
        if all(len(c) == 1 for c in live):
            if not self.removed_in_pass:
                return False  # a full pass over single layers removed nothing
            chunks = live
            self.sibling = {}
        else:
            chunks, self.sibling = [], {}
            for c in live:
                halves = _halves(c)
                if len(halves) == 2:
                    self.sibling[len(chunks) + 1] = len(chunks)
                chunks += halves
        self.chunks, self.queue = chunks, list(range(len(chunks)))
        self.level += 1
        self.removed_in_pass = False
        self.outcome = {}
        return True

    def _sorted(self, names: Iterable[str]) -> tuple[str, ...]:
        return tuple(sorted(names, key=self.order.__getitem__))


def _halves(chunk: tuple[str, ...]) -> list[tuple[str, ...]]:
    if len(chunk) == 1:
        return [chunk]
    mid = (len(chunk) + 1) // 2
    return [chunk[:mid], chunk[mid:]]
