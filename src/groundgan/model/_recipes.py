"""Training recipes: named sets of :meth:`GroundGAN.train` hyperparameters.

``"paper"`` is the schedule of the GRouNdGAN paper (Methods and its reference
implementation's configuration); ``"fast"`` is groundgan's recipe for short budgets, chosen from
the learning curves recorded in ``docs/realism.md``. Explicit keyword arguments of ``train``
override the recipe's values.
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace
from typing import Any

from .._validation import InvalidInputError


@dataclass(frozen=True)
class Recipe:
    """Hyperparameters of both training stages (see :meth:`GroundGAN.train`)."""

    max_steps_stage1: int
    max_steps_stage2: int
    batch_size_stage1: int
    batch_size_stage2: int
    n_critic: int
    gp_lambda: float
    lr_stage1: float
    lr_stage1_final: float
    lr_generator_stage2: float
    lr_generator_stage2_final: float
    lr_critic_stage2: float
    lr_critic_stage2_final: float
    lr_labeler: float
    weight_decay: float
    ema_decay: float | None
    #: start the stage-2 critic from the trained stage-1 critic (same architecture)
    warm_start_critic: bool
    #: with ``max_time``: the share of the time given to stage 1 (the rest goes to stage 2)
    stage1_time_share: float

    def with_overrides(self, overrides: dict[str, Any]) -> Recipe:
        """This recipe with the non-``None`` values of ``overrides`` in place of its own."""
        return replace(self, **{k: v for k, v in overrides.items() if v is not None})

    def as_dict(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self)}


#: The paper's schedule: 200,000 + 1,000,000 steps, batches 128 / 1024, AdamW (AMSGrad, betas
#: 0.5 / 0.9), stage 1 at 1e-4 -> 1e-5, stage 2 generator 1e-3 -> 1e-4, critic 1e-3 (the
#: reference's configuration), labelers 1e-4, 5 critic updates per step, no weight averaging.
PAPER = Recipe(
    max_steps_stage1=200_000,
    max_steps_stage2=1_000_000,
    batch_size_stage1=128,
    batch_size_stage2=1024,
    n_critic=5,
    gp_lambda=10.0,
    lr_stage1=1e-4,
    lr_stage1_final=1e-5,
    lr_generator_stage2=1e-3,
    lr_generator_stage2_final=1e-4,
    lr_critic_stage2=1e-3,
    lr_critic_stage2_final=1e-3,
    lr_labeler=1e-4,
    weight_decay=0.01,
    ema_decay=None,
    warm_start_critic=False,
    stage1_time_share=0.1,
)

#: groundgan's recipe for short budgets (minutes on a CPU): stage 1 at ten times the paper's
#: learning rate, stage-2 batches of 256; docs/realism.md has the curves that chose it.
FAST = replace(
    PAPER,
    max_steps_stage1=2_000,
    max_steps_stage2=3_000,
    lr_stage1=1e-3,
    lr_stage1_final=1e-4,
    batch_size_stage2=256,
    stage1_time_share=0.3,
)

RECIPES: dict[str, Recipe] = {"paper": PAPER, "fast": FAST}


def get_recipe(name: str) -> Recipe:
    """The recipe called ``name``; an unknown name is refused with the known ones."""
    if not isinstance(name, str) or name not in RECIPES:
        raise InvalidInputError(
            f"unknown recipe {name!r}: use one of {sorted(RECIPES)} (and override single "
            "values with train()'s keyword arguments)"
        )
    return RECIPES[name]


def check_ema_decay(decay: float | None) -> float | None:
    """``None`` (no average) or a decay in [0, 1)."""
    if decay is None:
        return None
    if isinstance(decay, bool) or not isinstance(decay, (int, float)) or not 0 <= decay < 1:
        raise InvalidInputError(f"ema_decay must be None or a number in [0, 1), got {decay!r}")
    return float(decay)


def check_share(share: float) -> float:
    if isinstance(share, bool) or not isinstance(share, (int, float)) or not 0 < share < 1:
        raise InvalidInputError(
            f"stage1_time_share must be a number between 0 and 1, got {share!r}"
        )
    return float(share)
