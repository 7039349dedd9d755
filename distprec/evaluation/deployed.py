"""The deployed path (CPU emulation only): a plan passes when the emulation the search
judges by passes it and the file ``--save-model`` would write passes too, run in ONNX
Runtime's CPU provider with its default options (as Polygraphy's onnxrt runner builds it).

distprec/deployed.py says when a search needs it.
"""

from __future__ import annotations

from collections.abc import Sequence

from distprec.evaluation.base import Evaluation, Path
from distprec.evaluation.candidate import CandidatePath
from distprec.strategies.base import Keep


class DeployedPath(Path):
    name = "deployed"

    def __init__(self, emulated: CandidatePath, file: CandidatePath) -> None:
        self.emulated, self.file = emulated, file

    @property
    def cost_s(self) -> float | None:
        return self.file.cost_s

    def evaluate(self, keeps: Sequence[Keep]) -> list[Evaluation]:
        return [self.one(k) for k in keeps]

    def one(self, keep: Keep) -> Evaluation:
        """The emulation's verdict where it fails (the file is not run), else the file's."""
        ev = self.emulated.one(keep)
        if ev.verdict.passed:
            ev = self.file.one(keep)
        ev.via = self.name
        return ev
