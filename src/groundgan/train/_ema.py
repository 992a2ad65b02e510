"""Exponential moving average of a generator's weights (Yazıcı et al., ICLR 2019).

The average is a copy of the generator network (held by the module, see
:meth:`groundgan.nn.GroundGANModule.start_average`), updated after every training step as
``average <- decay_t * average + (1 - decay_t) * weights``. Early in training the effective
decay is smaller, ``decay_t = min(decay, (1 + t) / (10 + t))`` after ``t`` completed steps, so
the average is not dominated by the initial weights on a short schedule. Buffers (BatchNorm's
running statistics, unused when generating with batch statistics) are copied, not averaged.
"""

from __future__ import annotations

import torch
from torch import nn


def decay_at(decay: float, step: int) -> float:
    """The effective decay after ``step`` completed steps (warm-up towards ``decay``)."""
    return min(decay, (1.0 + step) / (10.0 + step))


@torch.no_grad()
def update_average(average: nn.Module, current: nn.Module, decay: float) -> None:
    """``average <- decay * average + (1 - decay) * current`` for every floating parameter."""
    averaged = [p for p in average.parameters()]
    weights = [p.detach() for p in current.parameters()]
    if averaged:
        torch._foreach_lerp_(averaged, weights, 1.0 - decay)
    for mine, theirs in zip(average.buffers(), current.buffers(), strict=True):
        mine.copy_(theirs)
