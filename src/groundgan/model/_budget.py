"""Training time: a time budget (``train(max_time=...)``) and the warning for long CPU runs.

With a budget, the step total of each stage follows from its speed, measured before the stage
on a throw-away copy of the networks (so the real run draws exactly the randomness of a run
with those totals given explicitly): stage 1 gets a share of the budget, stage 2 what is left.
A clock checked after every step also stops a stage when the budget is spent, so the budget is
honoured even when the measured speed was optimistic.
"""

from __future__ import annotations

import copy
import math
import time
import warnings
from dataclasses import replace
from datetime import timedelta

import torch

from .._validation import InvalidInputError
from ..train import GROUNDGAN_STAGES, PerformanceOptions, StageSettings

#: A CPU run whose stage is estimated to take longer than this gets a warning.
LONG_RUN_SECONDS = 3600.0
#: The speed probe runs at least this many timed steps, and at least PROBE_SECONDS.
PROBE_STEPS, PROBE_SECONDS, PROBE_MAX_STEPS, PROBE_WARMUP = 3, 1.0, 50, 2
#: The long-run warning is decided once this many steps and seconds have passed.
WARN_AFTER_STEPS, WARN_AFTER_SECONDS = 5, 2.0


def now() -> float:
    """The clock of budgets and speed probes (``time.perf_counter``; tests replace it)."""
    return time.perf_counter()


def budget_seconds(max_time: float | timedelta | None) -> float | None:
    """``max_time`` in seconds (``None`` stays ``None``); refuses non-positive values."""
    if max_time is None:
        return None
    if isinstance(max_time, timedelta):
        seconds = max_time.total_seconds()
    elif isinstance(max_time, (int, float)) and not isinstance(max_time, bool):
        seconds = float(max_time)
    else:
        raise InvalidInputError(
            f"max_time must be seconds (a number) or a datetime.timedelta, got {max_time!r}"
        )
    if not math.isfinite(seconds) or seconds <= 0:
        raise InvalidInputError(f"max_time must be positive and finite, got {max_time!r}")
    return seconds


class TimeBudget:
    """Seconds allowed to one ``train()`` call, counted from its creation."""

    def __init__(self, seconds: float, stage1_share: float):
        self.seconds, self.stage1_share = seconds, stage1_share
        self.start = now()

    def elapsed(self) -> float:
        return now() - self.start

    def seconds_for(self, stage: str, stages: tuple[str, ...]) -> float:
        """Seconds left for ``stage``: stage 1 its share (all when stage 2 does not follow)."""
        left = self.seconds - self.elapsed()
        if stage == "stage1" and "stage2" in stages:
            left = self.stage1_share * self.seconds - self.elapsed()
        return max(left, 0.0)

    def deadline_for(self, stage: str, stages: tuple[str, ...]) -> float:
        """The time (:func:`now`) at which ``stage`` must stop."""
        return now() + self.seconds_for(stage, stages)


def steps_per_second(
    module,
    name: str,
    settings: StageSettings,
    performance: PerformanceOptions,
    data: torch.Tensor,
) -> float:
    """Training steps per second of stage ``name``, timed on a copy of ``module``."""
    probe = copy.deepcopy(module)
    rng = torch.Generator(device=data.device).manual_seed(0)
    stage = GROUNDGAN_STAGES[name](
        probe, data, replace(settings, ema_decay=None), rng, performance=performance
    )
    for _ in range(PROBE_WARMUP):
        stage.step()
    _synchronize(data.device)
    start, steps = now(), 0
    while steps < PROBE_MAX_STEPS and (steps < PROBE_STEPS or now() - start < PROBE_SECONDS):
        stage.step()
        steps += 1
        _synchronize(data.device)
    return steps / (now() - start)


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class StepClock:
    """Checked after every step (no host sync): stops at a deadline, warns of long CPU runs.

    Parameters
    ----------
    stage
        Name of the stage, for the warning.
    start_step, max_steps
        Where the stage starts and its total.
    deadline
        Time (:func:`now`) at which to stop; ``None``: no budget.
    warn_long
        Warn once when the stage's remaining steps are estimated to take longer than
        :data:`LONG_RUN_SECONDS`.
    """

    def __init__(
        self,
        stage: str,
        start_step: int,
        max_steps: int,
        deadline: float | None,
        warn_long: bool,
    ):
        self.stage, self.start_step, self.max_steps = stage, start_step, max_steps
        self.deadline, self.warn_long = deadline, warn_long
        self.start = now()

    def __call__(self, step: int) -> bool:
        """Whether the stage should stop after ``step``."""
        time_now = now()
        if self.warn_long:
            self._maybe_warn(step, time_now - self.start)
        return self.deadline is not None and time_now >= self.deadline

    def _maybe_warn(self, step: int, elapsed: float) -> None:
        done = step - self.start_step
        if done < WARN_AFTER_STEPS or elapsed < WARN_AFTER_SECONDS:
            return
        self.warn_long = False
        remaining = (self.max_steps - step) * elapsed / done
        if remaining > LONG_RUN_SECONDS:
            warnings.warn(
                f"{self.stage}: {self.max_steps - step:,} more steps will take about "
                f"{format_duration(remaining)} on this CPU ({elapsed / done:.3g} s per step). "
                "For a run of minutes, pass max_time= (seconds or a timedelta) and/or "
                "recipe='fast'; the paper's schedule is meant for a GPU.",
                UserWarning,
                stacklevel=2,
            )


def format_duration(seconds: float) -> str:
    """``5400`` -> ``"1.5 h"``; minutes below an hour, days above two."""
    if seconds >= 2 * 86400:
        return f"{seconds / 86400:.1f} days"
    if seconds >= 3600:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 60:.0f} min"
