"""Minimize: shrink a passing keep-set to a 1-minimal one, by parallel delta debugging.

Prefix searches (bisect, linear) can only keep a contiguous run of layers in FP32; when
the troublesome layers are spread out, their answer keeps most of the network high. This
search starts from any passing keep-set (all layers, or another strategy's answer) and
removes layers from it, in the manner of Zeller's ddmin as Hypothesis's shrinker runs it:

- The current set is cut into chunks (contiguous in layer order, since neighbouring layers
  tend to be needed or not together). Level 0 is one chunk, the whole set: removing it is
  the cheap first guess, all-low. Each later level halves the chunks that survived.
- Within a level, each chunk's removal is tried once, W chunks side by side, always
  relative to the current set. A removal that passes is accepted; when several of one
  batch pass alone, their union becomes the next base and is checked in the next batch
  (with the next removals tried from it speculatively). If the union fails (small errors
  of many lowered layers add up, or the oracle is not monotonic), the lowest-numbered
  removal that passed alone is accepted instead.
- When every chunk is a single layer, passes over the single layers repeat until one
  removes nothing: then every single-layer removal of the final set was evaluated and
  failed, and the answer is reported ``1-minimal``.

Rules that make it terminate on any oracle (flaky, non-monotonic, adversarial): a keep-set
is never evaluated twice (a verdict already told is reused); the current set only ever
shrinks; within a level every chunk is tried once before the level changes; a failed
union falls back to a tested passing set that is strictly smaller; and a new pass over the
single layers starts only after the previous one removed something. So the number of
batches is bounded by a polynomial of the start size. Progress is deterministic: a batch
is decided only when all of its verdicts are in, never by arrival order.

The work is batch-synchronous: ``ask`` returns nothing while a batch is out. With monotone
verdicts and k needed layers among m, a level holds at most 2k chunks, so the search
costs O(k log m) evaluations (bench/strategies.py measures it).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from distprec.strategies.base import Keep, Outcome, Strategy, Verdict

BASE = -1  # batch slot of the base (a set to confirm), not a chunk removal


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
        self.base: Keep = start  # cur less the removals still to confirm (== cur when none)
        self.fallback: Keep | None = None  # a tested passing set, if the base fails
        self.chunks: list[tuple[str, ...]] = [self._sorted(start)] if start else []
        self.queue: list[int] = list(range(len(self.chunks)))
        self.level = 0
        self.removed_in_pass = False
        self.batch: dict[Keep, int] = {}  # keep -> chunk index removed, or BASE
        self.finished = False

    # -- the protocol ---------------------------------------------------------------------
    @property
    def done(self) -> bool:
        return self.finished

    def _propose(self, n: int) -> list[Keep]:
        if not self.batch:
            self._form(n)
        return [k for k in self.batch if k not in self.told and k not in self.pending]

    def _update(self, keep: Keep, verdict: Verdict) -> None:
        if verdict is Verdict.ERROR:
            self.note("some plans did not build or run: counted as not passing")
        if keep in self.batch and all(k in self.told for k in self.batch):
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
        """The next batch; verdicts already known are used at once, never asked again."""
        n = max(n, 1)
        while not self.finished and not self.batch:
            if self.budget is not None and len(self.told) >= self.budget:
                self.note(f"stopped at the budget of {self.budget} evaluations")
                self.finished = True
                break
            batch: dict[Keep, int] = {}
            if self.base != self.cur:
                batch[self.base] = BASE
            removals = False
            while len(batch) < n:
                if not self.queue:
                    # the next level depends on this batch's removals: wait for them
                    if removals or not self._next_level():
                        break
                    continue
                i = self.queue.pop(0)
                chunk = self.base.intersection(self.chunks[i])
                if chunk:
                    batch[self.base - chunk] = i
                    removals = True
            if not batch:
                self.finished = True
                break
            self.batch = batch
            if all(k in self.told for k in batch):
                self._close()

    def _close(self) -> None:
        """All verdicts of the batch are in: accept removals, or fall back."""
        batch, self.batch = self.batch, {}
        passing = sorted((i, k) for k, i in batch.items()
                         if i != BASE and self.told[k].passed)  # by chunk index
        base = next((k for k, i in batch.items() if i == BASE), None)
        if base is not None and not self.told[base].passed:
            if self.cur is None and not passing:
                self.note("the start plan fails: nothing to shrink")
                self.finished = True
                return
            if self.cur is None:
                self.note("non-monotonic: the start plan fails, a smaller plan passes")
                self.cur = passing[0][1]
            else:
                self.note("removals that passed alone failed together (their errors add "
                          "up): one of them kept")
                self.cur = self.fallback
            self.base, self.fallback = self.cur, None
            self.queue = list(range(len(self.chunks)))  # this batch's removals are void
            self.removed_in_pass = True
            return
        if base is not None:
            self.cur, self.fallback = base, None
        if not passing:
            return
        self.removed_in_pass = True
        if len(passing) == 1:
            self.cur = self.base = passing[0][1]
            return
        self.fallback = passing[0][1]
        self.base = self.cur.difference(*(self.chunks[i] for i, _ in passing))

    def _next_level(self) -> bool:
        """Halve the surviving chunks; False when the search is over."""
        live = [c for c in (tuple(x for x in chunk if x in self.base) for chunk in self.chunks)
                if c]
        if not live:
            return False
        if all(len(c) == 1 for c in live):
            if not self.removed_in_pass:
                return False  # a full pass over single layers removed nothing
            chunks = live
        else:
            chunks = [half for c in live for half in _halves(c)]
        self.chunks, self.queue = chunks, list(range(len(chunks)))
        self.level += 1
        self.removed_in_pass = False
        return True

    def _sorted(self, names: Iterable[str]) -> tuple[str, ...]:
        return tuple(sorted(names, key=self.order.__getitem__))


def _halves(chunk: tuple[str, ...]) -> list[tuple[str, ...]]:
    if len(chunk) == 1:
        return [chunk]
    mid = (len(chunk) + 1) // 2
    return [chunk[:mid], chunk[mid:]]
