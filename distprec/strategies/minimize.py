"""Minimize: shrink a passing keep-set to a 1-minimal one by delta debugging, speculatively.

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

W workers run that sequential path ahead of its verdicts, as a processor predicts
branches. The window holds the next tries along the path on which every verdict is the
predicted one (each try starts from the set the earlier tries would leave); a free worker
takes the next try at once, with no batch to wait for. Verdicts are committed in path
order, whatever order they arrive in: the head of the window, while its verdict is in. A
mispredicted try is committed with its real verdict, and the tries after it, made from
the wrong set, are no longer ``wanted`` (the driver cancels them) and are tried again from
the right set. So the answer is exactly the one W = 1 finds; W only makes it sooner.
Predictions follow ddmin's structure, then the verdicts seen (``_predict``).
An earlier version tried W removals from the same set and kept their union: fewer rounds,
but its answers grew with W (35, 39, 43 layers at W = 1, 2, 4 on the 412-layer planted
model on the H200s, where FP16 noise makes verdicts non-monotonic).

Rules that make it terminate on any oracle (flaky, non-monotonic, adversarial): a keep-set
is never evaluated twice (a verdict already told is reused); the current set only ever
shrinks; within a level every chunk is tried once before the level changes; and a new
pass over the single layers starts only after the previous one removed something. So the
number of committed tries is bounded by a polynomial of the start size, and each window
is at most W tries ahead.

With monotone verdicts and k needed layers among m, a level holds at most 2k chunks, so
the search costs O(k log m) evaluations (bench/strategies.py measures it).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from distprec.strategies.base import Keep, Outcome, Strategy, Verdict

START = -1  # the try of the start plan itself, not a chunk removal


@dataclass(frozen=True)
class Try:
    keep: Keep
    chunk: int  # index into ``chunks``, or START
    predicted: bool  # the verdict the tries after it assume
    after: Keep  # the current set on the predicted path once this try is decided


class Minimize(Strategy):
    name = "minimize"
    speculative = True

    def __init__(self, layers: Sequence[str], start: Iterable[str] | None = None,
                 budget: int | None = None, ranking: Sequence[str] | None = None) -> None:
        super().__init__(layers)
        # Chunks follow the layer order, or a sensitivity ranking (most sensitive first)
        # read backwards: the least sensitive layers then share chunks whose removal passes
        # early, and the needed ones gather in few chunks (diffuse FP16 noise, where a
        # topological chunk mixes harmless and needed layers).
        self.chunk_order: dict[str, object] = dict(self.order)
        if ranking is not None:
            back = {name: -i for i, name in enumerate(ranking)}
            self.chunk_order = {name: (back.get(name, 1), i) for name, i in self.order.items()}
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
        self.window: list[Try] = []  # tries ahead of the committed path, in path order
        self.started = False
        self.finished = False

    # -- the protocol ---------------------------------------------------------------------
    @property
    def done(self) -> bool:
        return self.finished

    def wanted(self, keep: Keep) -> bool:
        """Tries after a misprediction were made from the wrong set: cancel them."""
        return not self.finished and any(t.keep == keep for t in self.window)

    def _propose(self, n: int) -> list[Keep]:
        # tries of the window that a cancelled plan of an earlier window left unasked
        out = [t.keep for t in self.window if t.keep not in self.told and
               t.keep not in self.pending][:n]
        while len(out) < n and not self.finished:
            t = self._extend()
            if t is None:
                break
            if t.keep in self.told:  # known already (a chain's first stage): no need to ask
                self._advance()
            elif t.keep not in self.pending:
                out.append(t.keep)
        return out

    def _update(self, keep: Keep, verdict: Verdict) -> None:
        if verdict is Verdict.ERROR:
            self.note("some plans did not build or run: counted as not passing")
        self._advance()

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
        """``level``: halvings so far (0: one chunk, the whole set); ``chunk``: the largest
        chunk's size in layers; ``chunks``: how many at this level; ``kept``: layers in the
        current passing set; ``left``: chunk removals of this level not yet tried;
        ``ahead``: tries asked ahead of the committed path (in flight or speculated)."""
        return {"level": self.level, "chunk": max(map(len, self.chunks), default=0),
                "chunks": len(self.chunks),
                "kept": len(self.cur) if self.cur is not None else len(self.start),
                "left": len(self.queue), "ahead": len(self.window)}

    def plans_left(self) -> int | None:
        """An estimate, from ddmin's structure: the tries left at this level (the window's
        and the queue's), then, at each halving still to come, two tries for each chunk
        expected to survive this level (with monotone verdicts a surviving chunk holds a
        needed layer: one half's removal fails, the other's passes), then the pass over
        single layers that proves the answer 1-minimal. Which chunks survive is what the
        search itself predicts (``_predict``) for the tries not decided yet."""
        if self.finished:
            return 0
        base = self.cur if self.cur is not None else self.start
        path = {t.chunk: (self.told[t.keep].passed if t.keep in self.told else t.predicted)
                for t in self.window if t.chunk != START}
        open_ = sum(t.keep not in self.told for t in self.window) + (not self.started)
        for i in self.queue:
            if base.intersection(self.chunks[i]):
                path[i] = self._predict(i, path)
                open_ += 1
        removed = [*self.outcome.values(), *path.values()]
        survivors = min(len(base), max(1, removed.count(False)))
        size = max((len(base.intersection(c)) for c in self.chunks), default=0)
        if size <= 1:  # single layers: one more pass when this one removes something
            again = self.removed_in_pass or any(path.values())
            return open_ + (survivors if again else 0)
        return open_ + 2 * survivors * math.ceil(math.log2(size)) + survivors

    # -- the path -----------------------------------------------------------------------------
    def _extend(self) -> Try | None:
        """One more try at the end of the window, or None when the next must wait."""
        if not self.started:
            self.started = True
            self.window.append(Try(self.start, START, True, self.start))
            return self.window[-1]
        if self.window and self.window[0].chunk == START and self.window[0].keep in self.told:
            return None  # the start failed: nothing goes on from it
        while self.queue:
            if self.budget is not None and len(self.told) + len(self.window) >= self.budget:
                if not self.window:
                    self.note(f"stopped at the budget of {self.budget} evaluations")
                    self.finished = True
                return None
            base = self.window[-1].after if self.window else self.cur
            i = self.queue.pop(0)
            chunk = base.intersection(self.chunks[i])
            if chunk:  # chunks emptied by earlier removals are skipped, as W = 1 does
                path = {t.chunk: t.predicted for t in self.window}
                predict = self._predict(i, path)
                keep = base - chunk
                self.window.append(Try(keep, i, predict, keep if predict else base))
                return self.window[-1]
        # The level's end: the next level depends on every try still out.
        if not self.window and not self._next_level():
            self.finished = True
        return None if self.window or self.finished else self._extend()

    def _advance(self) -> None:
        """Commit the window's head while its verdict is in; a misprediction voids the rest.

        Commits go in path order, never in arrival order, so the answer is W = 1's.
        """
        while self.window and self.window[0].keep in self.told:
            t = self.window[0]
            passed = self.told[t.keep].passed
            if t.chunk == START:
                if passed:
                    self.cur = t.keep
                    self.window.pop(0)
                    continue
                rest = self.window[1:]
                if any(u.keep not in self.told for u in rest):
                    return  # a smaller plan beside it may still pass: wait for them
                self.window = []
                self._start_failed([u.keep for u in rest if self.told[u.keep].passed])
                return
            self.window.pop(0)
            self.seen[self._context(t.chunk, {})][passed] += 1
            self.outcome[t.chunk] = passed
            if passed:
                self.cur = t.keep
                self.removed_in_pass = True
            if passed != t.predicted:
                self.queue = [u.chunk for u in self.window] + self.queue
                self.window = []

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
        return tuple(sorted(names, key=self.chunk_order.__getitem__))


def _halves(chunk: tuple[str, ...]) -> list[tuple[str, ...]]:
    if len(chunk) == 1:
        return [chunk]
    mid = (len(chunk) + 1) // 2
    return [chunk[:mid], chunk[mid:]]
