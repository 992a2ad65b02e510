"""The reference implementation's training-step choices, as patches of groundgan's stages.

groundgan makes four choices of the stage-2 step differently from the reference implementation
(``docs/method.md``, "The training step, where the reference implementation differs"). Each
function here gives groundgan the reference's choice, so that ``learning_curve.py`` can measure
it side by side with groundgan's own. They patch the stage classes in place and are meant for a
benchmark process of their own; ``set_attribute`` lets a test pass ``monkeypatch.setattr``.

- :func:`attach_labeler_labels`: the labels of the generator's labeler losses are not detached.
- :func:`reference_initialisation`: the target generators' hidden weights start at the scale of
  the reference's dense masked layers (Xavier-uniform over the whole dense layer).
- :func:`reuse_real_batch`: one real minibatch per step, for all critic updates, the generator
  update and the labeler.
- :func:`fresh_labeler_cells`: the labelers learn from a batch generated after the generator
  update instead of the update's own cells.
"""

from __future__ import annotations

import math
from collections.abc import Callable

SetAttribute = Callable[[object, str, object], None]


def attach_labeler_labels(set_attribute: SetAttribute = setattr) -> None:
    """The reference's generator loss: the labels of the labeler losses (the simulated TFs
    after LSN) are not detached, so their gradient reaches the targets through the
    library-size scale."""
    import torch.nn.functional as F

    from groundgan.train import GroundGANStage

    def extra_generator_losses(self, fake, real):
        m = self.module
        fake_targets, fake_tfs = self.split(fake)
        return [
            F.mse_loss(m.labeler(fake_targets), fake_tfs),
            F.mse_loss(m.antilabeler(fake_targets), fake_tfs),
        ]

    set_attribute(GroundGANStage, "extra_generator_losses", extra_generator_losses)


def reinitialise_like_reference(target_generators, seed: int = 0) -> None:
    """Redraw the hidden layers' weights at the reference's scale, in place.

    The reference initialises each dense masked hidden layer with Xavier-uniform over its whole
    dense shape (fan-in: the TFs and noises, or the hidden units of all targets) and then masks
    it, so the weights a gene keeps are drawn from U(-b, b), b = sqrt(6 / (fan_in + fan_out)).
    Output layers and biases are left alone: groundgan calibrates the output layer at the start
    of stage 2, and a bias before BatchNorm has no effect.
    """
    import torch
    from dense_reference import dense_size  # this folder is on sys.path when run

    tg = target_generators
    degrees = [g.n_regulators for g in tg.groups for _ in range(g.n_genes)]
    size = dense_size(tg.n_roots, degrees, tg.depth, tg.width)
    units, n_inputs = size.total_hidden, size.n_inputs
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for group in tg.groups:
            for layer, weight in enumerate(group.weights):
                fan_in = n_inputs if layer == 0 else units
                bound = math.sqrt(6.0 / (fan_in + units))
                draw = torch.rand(weight.shape, generator=generator) * 2 - 1
                weight.copy_(draw.to(weight) * bound)


def reference_initialisation(set_attribute: SetAttribute = setattr) -> None:
    """Stage 2 starts its target generators at the reference's weight scale (see
    :func:`reinitialise_like_reference`); applied just before the stage's calibration."""
    from groundgan.train import GroundGANStage

    calibrate = GroundGANStage.calibrate

    def calibrate_from_reference_scale(self, n_cells: int = 4096) -> None:
        reinitialise_like_reference(self.module.target_generators)
        calibrate(self, n_cells)

    set_attribute(GroundGANStage, "calibrate", calibrate_from_reference_scale)


def reuse_real_batch(set_attribute: SetAttribute = setattr) -> None:
    """One real minibatch per step (both stages): drawn for the first critic update, reused
    by the other critic updates and by the generator update (which hands it to the labeler)."""
    from groundgan.train import WGANGPStage

    draw = WGANGPStage.real_batch

    def real_batch(self):
        calls = getattr(self, "_real_batch_calls", 0)
        if calls % (self.settings.n_critic + 1) == 0:
            self._reused_real_batch = draw(self)
        self._real_batch_calls = calls + 1
        return self._reused_real_batch

    set_attribute(WGANGPStage, "real_batch", real_batch)


def fresh_labeler_cells(set_attribute: SetAttribute = setattr) -> None:
    """The labelers learn from cells generated after the generator update, not from the
    update's own cells (one more generator pass per step)."""
    import torch

    from groundgan.train import GroundGANStage

    def after_generator_step(self, fake, real):
        with torch.no_grad(), self.autocast():
            fresh = self.generate(real.shape[0])
        self._labeler_steps_plain(fresh, real)

    set_attribute(GroundGANStage, "after_generator_step", after_generator_step)


#: Patch of each ``learning_curve.py`` variant that changes the training step.
PATCHES: dict[str, Callable[..., None]] = {
    "attached-labels": attach_labeler_labels,
    "reference-init": reference_initialisation,
    "reused-real-batch": reuse_real_batch,
    "fresh-labeler-cells": fresh_labeler_cells,
}
