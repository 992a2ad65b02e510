"""The training loop: steps a stage up to its total, logs from device buffers, calls hooks."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from tqdm.auto import tqdm

from ._stages import WGANGPStage

#: Called after a step as ``hook(stage, step)``; ``step`` counts completed steps of the stage.
StepHook = Callable[[WGANGPStage, int], None]


class NonFiniteLossError(FloatingPointError):
    """A training loss became NaN or infinite."""


def run_stage(
    stage: WGANGPStage,
    start_step: int,
    max_steps: int,
    *,
    log_every: int = 100,
    progress_bar: bool = True,
    hooks: Sequence[tuple[int, StepHook]] = (),
    rows: list[dict] | None = None,
) -> list[dict]:
    """Train ``stage`` from ``start_step`` up to ``max_steps`` completed steps.

    Losses are accumulated on the device and moved to the host every ``log_every`` steps (one
    sync per log, none per step); each log row is the mean over those steps. ``hooks`` are
    ``(every, hook)`` pairs: ``hook`` runs every ``every`` steps and after the last step, once the
    losses so far have been checked. Non-finite losses raise
    :class:`NonFiniteLossError` naming the stage and step.

    Returns the log rows; given a ``rows`` list, they are appended to it as they are logged, so
    that the caller keeps them when training is interrupted.
    """
    rows = [] if rows is None else rows
    names = stage.metric_names
    buffer = torch.zeros(len(names), device=stage.data.device)
    n_buffered = 0
    bar = tqdm(
        total=max_steps,
        initial=start_step,
        desc=f"{stage.name}",
        disable=not progress_bar,
        dynamic_ncols=True,
        leave=True,
    )
    try:
        for step in range(start_step + 1, max_steps + 1):
            buffer += stage.step()
            stage.completed_steps = step
            n_buffered += 1
            last = step == max_steps
            due = [hook for every, hook in hooks if step % every == 0 or last]
            # flush (and check for non-finite losses) before any hook sees the weights
            if n_buffered == log_every or last or due:
                row = dict(zip(names, (buffer / n_buffered).tolist(), strict=True))
                if not all(map(_finite, row.values())):
                    raise NonFiniteLossError(
                        f"{stage.name}: non-finite loss within steps {step - n_buffered + 1}-{step} "
                        f"({row}); training stopped"
                    )
                rows.append({"stage": stage.name, "step": step, **row})
                buffer.zero_()
                n_buffered = 0
                bar.set_postfix(
                    wasserstein=f"{row['wasserstein']:.3g}", g_loss=f"{row['generator_loss']:.3g}"
                )
            for hook in due:
                hook(stage, step)
            bar.update(1)
    finally:
        bar.close()
    return rows


def _finite(x: float) -> bool:
    return x == x and abs(x) != float("inf")
