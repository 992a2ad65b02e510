"""The training loop: steps a stage up to its total, logs from device buffers, calls hooks."""

from __future__ import annotations

import contextlib
import signal
import sys
import threading
from collections.abc import Callable, Iterator, Sequence

import torch
from tqdm.auto import tqdm

from ._stages import WGANGPStage

#: Called after a step as ``hook(stage, step)``; ``step`` counts completed steps of the stage.
StepHook = Callable[[WGANGPStage, int], None]


class NonFiniteLossError(FloatingPointError):
    """A training loss became NaN or infinite."""


class TrainingInterrupted(KeyboardInterrupt):
    """Ctrl-C stopped training cleanly: after step ``step`` of stage ``stage``, with every
    weight that of a completed step.

    Importable as ``groundgan.TrainingInterrupted``. The message says how to resume: call
    ``train()`` again on the same model, or, in a new process, train a new model with the same
    ``checkpoint_dir`` (``groundgan run``: run the same command again).
    """

    def __init__(self, stage: str, step: int):
        super().__init__(
            f"{stage}: interrupted after step {step}; to resume, call train() again on the "
            "same model (it keeps every completed step), or train a new model with the same "
            "checkpoint_dir to resume from its newest checkpoint"
        )
        self.stage, self.step = stage, step


def run_stage(
    stage: WGANGPStage,
    start_step: int,
    max_steps: int,
    *,
    log_every: int = 100,
    progress_bar: bool = True,
    hooks: Sequence[tuple[int, StepHook]] = (),
    rows: list[dict] | None = None,
    stop_after: Callable[[int], bool] | None = None,
    bar: tqdm | None = None,
) -> list[dict]:
    """Train ``stage`` from ``start_step`` up to ``max_steps`` completed steps.

    Losses are accumulated on the device and moved to the host every ``log_every`` steps (one
    sync per log, none per step); each log row is the mean over those steps. ``hooks`` are
    ``(every, hook)`` pairs: ``hook`` runs every ``every`` steps and after the last step, once the
    losses so far have been checked. Non-finite losses raise
    :class:`NonFiniteLossError` naming the stage and step.

    A first Ctrl-C (SIGINT, also a notebook's interrupt) lets the step in progress finish,
    logs the losses buffered so far, runs the hooks due at that step and then raises
    :class:`TrainingInterrupted` (a :class:`KeyboardInterrupt`): every weight belongs to a
    completed step, and training continues exactly where it stopped. A second Ctrl-C stops at
    once. (Only in the main thread, and only where Python's default SIGINT handler is
    installed.)

    ``stop_after(step)``, when given, is asked after every step (on the host, without a device
    sync) whether to end the stage there: that step is then treated as the last one (losses
    logged, hooks run) and the loop returns, leaving ``stage.completed_steps`` below
    ``max_steps``.

    ``bar``: a progress bar shared with other stages (advanced, labelled with the stage's name,
    left open); by default the stage shows one of its own when ``progress_bar`` is true.

    Returns the log rows; given a ``rows`` list, they are appended to it as they are logged, so
    that the caller keeps them when training is interrupted.
    """
    rows = [] if rows is None else rows
    buffer = torch.zeros(len(stage.metric_names), device=stage.data.device)
    n_buffered = 0
    own_bar = bar is None
    if own_bar:
        bar = tqdm(
            total=max_steps,
            initial=start_step,
            desc=f"{stage.name}",
            disable=not progress_bar,
            dynamic_ncols=True,
            leave=True,
        )
    else:
        bar.set_description(stage.name)
    with interrupt_after_step() as interrupt_requested:
        try:
            for step in range(start_step + 1, max_steps + 1):
                buffer += stage.step()
                stage.completed_steps = step
                n_buffered += 1
                last = step == max_steps or (stop_after is not None and stop_after(step))
                due = [hook for every, hook in hooks if step % every == 0 or last]
                stopping = interrupt_requested()
                # flush (and check for non-finite losses) before any hook sees the weights
                if n_buffered == log_every or last or due or stopping:
                    rows.append(_log_row(stage, step, buffer, n_buffered))
                    buffer.zero_()
                    n_buffered = 0
                    row = rows[-1]
                    bar.set_postfix(
                        wasserstein=f"{row['wasserstein']:.3g}",
                        g_loss=f"{row['generator_loss']:.3g}",
                    )
                for hook in due:
                    hook(stage, step)
                bar.update(1)
                if stopping:
                    raise TrainingInterrupted(stage.name, step)
                if last:
                    break
        finally:
            if own_bar:
                bar.close()
    return rows


def _log_row(stage: WGANGPStage, step: int, buffer: torch.Tensor, n_buffered: int) -> dict:
    """The mean losses of the last ``n_buffered`` steps; non-finite ones raise."""
    row = dict(zip(stage.metric_names, (buffer / n_buffered).tolist(), strict=True))
    if not all(map(_finite, row.values())):
        raise NonFiniteLossError(
            f"{stage.name}: non-finite loss within steps {step - n_buffered + 1}-{step} "
            f"({row}); training stopped"
        )
    return {"stage": stage.name, "step": step, **row}


@contextlib.contextmanager
def interrupt_after_step() -> Iterator[Callable[[], bool]]:
    """Within the block, a first SIGINT is remembered instead of raised; yields the function
    that says whether one came. A second SIGINT raises :class:`KeyboardInterrupt` at once.

    Nothing changes outside the main thread or where a handler other than Python's default
    one is installed (the first SIGINT then acts as it always does).
    """
    requested: list[bool] = []
    if (
        threading.current_thread() is not threading.main_thread()
        or signal.getsignal(signal.SIGINT) is not signal.default_int_handler
    ):
        yield lambda: False
        return

    def remember(signum, frame) -> None:
        if requested:
            raise KeyboardInterrupt
        requested.append(True)
        tqdm.write(
            "interrupt: stopping after this training step (interrupt again to stop at once)",
            file=sys.stderr,
        )

    signal.signal(signal.SIGINT, remember)
    try:
        yield lambda: bool(requested)
    finally:
        signal.signal(signal.SIGINT, signal.default_int_handler)


def _finite(x: float) -> bool:
    return x == x and abs(x) != float("inf")
