"""On the CPU emulation, the answer judged as the file a user deploys, and the search
going on where that file fails.

A CPU search judges the FP16/BF16 storage emulation (rewrites.emulate_low_precision): what
a device with real low-precision kernels computes. The file ``--save-model`` writes holds
real casts instead, and ONNX Runtime's CPU provider computes much of it in FP32 and drops
or keeps roundings its own way: on Silero VAD the emulation passed a 1-layer plan at
7.6e-4 while the written file gave 8.5e-3 in ONNX Runtime, and `polygraphy run --onnxrt`
failed it. So the answer is run once more as that file (``Evaluator.deployed``). Where the
file fails, the search goes on judging by both: a plan passes only where the emulation (on
the worker's path, the switchboard where it was chosen: on the CPU it equals a candidate)
and then the file pass it. The emulation's failures stand (they fail both ways) and are
replayed; its passes are judged again, both ways, as the strategy asks for them.
"""

from __future__ import annotations

from collections.abc import Callable

from distprec.actors.loop import EventSink, LoopResult
from distprec.confirm import Run
from distprec.plan import plan_id
from distprec.strategies.base import Info, Keep, Outcome, Strategy, Verdict
from distprec.strategies.replay import EachOnce, Replay

VIA = "deployed"


def deployed_search(make: Callable[[], Strategy], run: Run, outcome: Outcome,
                    loop: LoopResult, layers: tuple[str, ...],
                    on_event: EventSink | None = None,
                    seed: dict[Keep, tuple[Verdict, Info | None]] | None = None
                    ) -> tuple[Outcome, list[str]]:
    """The answer that passes as the emulation and as the deployed file, and a note where
    the file changed it; ``loop`` gains every evaluation made here. ``seed``: verdicts of
    the deployed path known before (a journal being resumed)."""
    emit = on_event or (lambda kind, data: None)
    real: dict[Keep, tuple[Verdict, Info | None]] = dict(seed or {})
    if not outcome.passed or outcome.keep is None:
        return outcome, []
    answer = frozenset(outcome.keep)
    if answer not in real:
        emit("phase", {"name": "the answer as the deployed file (ONNX Runtime, CPU)"})
        check = run(EachOnce(layers, [answer]), VIA, None)
        loop.add(check)
        real.update((ev.keep, (ev.verdict, ev.info())) for ev in check.evaluations)
    if answer not in real:  # its worker was lost: no verdict to act on
        return outcome, ["the answer was NOT run as the deployed file (its worker was lost)"]
    verdict = real[answer][0]
    if verdict.passed:
        return outcome, []
    if verdict is Verdict.ERROR:  # the file does not run here (BF16: no CPU kernels): no verdict
        why = next((e.reason for e in reversed(loop.evaluations)
                    if e.via == VIA and e.keep == answer and e.reason), "")
        return outcome, [f"the answer's file does not run on ONNX Runtime's CPU provider "
                         f"({why or 'an error'}): it was not judged as deployed here"]
    emit("phase", {"name": "searching on, judged by the emulation and the deployed file"})
    failed = {e.keep: (e.verdict, e.info()) for e in loop.evaluations
              if e.via != VIA and not e.verdict.passed}
    strategy = Replay(make(), {**failed, **real})
    loop.add(run(strategy, VIA, None))
    return strategy.result(), [
        f"plan {plan_id(answer)} ({len(answer)} layers) passed on the emulation but failed "
        "as the file --save-model writes, run in ONNX Runtime's CPU provider: the search "
        "went on judging every plan both ways"]
