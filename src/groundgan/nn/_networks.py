"""The five networks of GRouNdGAN and the module that holds them.

``GroundGANModule`` knows genes only as column indices: ``tf_index`` and ``target_index`` place
the TFs and the targets into the cell vector (the data's gene order).
"""

from __future__ import annotations

import contextlib
import copy
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from ._blocks import MLP, BatchStats, LibrarySizeNormalization
from ._target_generators import TargetGenerators


class CausalController(MLP):
    """WGAN-GP generator of whole cells (stage 1); afterwards frozen and read at its TF columns.

    ``noise (batch, latent_dim) -> hidden (Linear, BatchNorm, ReLU) -> n_genes`` with ReLU output;
    LSN is applied outside so that its pre-LSN output can feed the target generators.
    """

    def __init__(self, latent_dim: int, hidden: Sequence[int], n_genes: int):
        super().__init__(latent_dim, hidden, n_genes, batch_norm=True, relu_output=True)
        self.latent_dim = latent_dim


class Critic(MLP):
    """WGAN critic: ``cells -> hidden (Linear, ReLU; no BatchNorm) -> 1``."""

    def __init__(self, n_genes: int, hidden: Sequence[int]):
        super().__init__(n_genes, hidden, 1, batch_norm=False, relu_output=False)


class Labeler(MLP):
    """Predicts TF expression from target expression (labeler and anti-labeler)."""

    def __init__(self, n_targets: int, hidden: Sequence[int], n_tfs: int):
        super().__init__(n_targets, hidden, n_tfs, batch_norm=True, relu_output=False)


@dataclass
class GenerationRecord:
    """Everything that determines a batch of generated cells, for exact replay.

    Shapes: ``controller_noise`` (cells, latent_dim), ``target_noise`` (cells, n_targets),
    ``tf_expression`` (cells, n_tfs; pre-LSN), ``lsn_scale`` (cells, 1); BatchNorm statistics
    (mean, variance) of every BatchNorm layer of the controller and of the target generators.
    """

    controller_noise: Tensor
    target_noise: Tensor
    tf_expression: Tensor
    lsn_scale: Tensor
    controller_stats: list[BatchStats]
    target_stats: list[BatchStats]


class GroundGANModule(nn.Module):
    """All networks of a GroundGAN model.

    Parameters
    ----------
    n_genes
        Genes per cell (TFs and targets).
    tf_index, target_index
        Positions in the cell vector of the root TFs (from the causal controller) and of the
        regulated genes (each from its own target generator; TFs regulated by other TFs
        included).
    regulators
        Per regulated gene (in ``target_index`` order), the indices of its regulators: ``i <
        len(tf_index)`` is root TF ``i``, ``len(tf_index) + k`` regulated gene ``k``.

    Notes
    -----
    The labelers predict every regulator (the root TFs, then the regulated TFs) from the genes
    that regulate nothing (the leaves); for a bipartite GRN, the TFs from the targets.
    """

    def __init__(
        self,
        n_genes: int,
        tf_index: Sequence[int],
        target_index: Sequence[int],
        regulators: Sequence[Sequence[int]],
        *,
        latent_dim: int,
        controller_hidden: Sequence[int],
        critic_hidden: Sequence[int],
        labeler_hidden: Sequence[int],
        depth: int,
        width: float,
        library_size: float,
    ):
        super().__init__()
        n_tfs, n_targets = len(tf_index), len(target_index)
        self.register_buffer("tf_index", torch.as_tensor(tf_index, dtype=torch.long))
        self.register_buffer("target_index", torch.as_tensor(target_index, dtype=torch.long))
        inputs, outputs = labeler_genes(tf_index, target_index, regulators)
        self.register_buffer(
            "labeler_inputs", torch.as_tensor(inputs, dtype=torch.long), persistent=False
        )
        self.register_buffer(
            "labeler_outputs", torch.as_tensor(outputs, dtype=torch.long), persistent=False
        )
        self.controller = CausalController(latent_dim, controller_hidden, n_genes)
        self.controller_critic = Critic(n_genes, critic_hidden)
        self.target_generators = TargetGenerators(
            regulators, depth=depth, width=width, n_roots=n_tfs
        )
        self.critic = Critic(n_genes, critic_hidden)
        self.labeler = Labeler(len(inputs), labeler_hidden, len(outputs))
        self.antilabeler = Labeler(len(inputs), labeler_hidden, len(outputs))
        self.lsn = LibrarySizeNormalization(library_size)
        #: exponential moving averages of generator networks (by attribute name), used for
        #: generation inside :meth:`generating`; empty unless training averaged them
        self.ema = nn.ModuleDict()
        self._use_average = False
        self.n_genes, self.n_tfs, self.n_targets = n_genes, n_tfs, n_targets

    # averaged weights --------------------------------------------------------------------
    def part(self, name: str) -> nn.Module:
        """The network ``name`` that generates: its average inside :meth:`generating`."""
        if self._use_average and name in self.ema:
            return self.ema[name]
        return getattr(self, name)

    def start_average(self, name: str) -> nn.Module:
        """The moving average of network ``name``, begun as a copy of it if there is none."""
        if name not in self.ema:
            self.ema[name] = copy.deepcopy(getattr(self, name)).requires_grad_(False)
        return self.ema[name]

    @torch.no_grad()
    def adopt_average(self, name: str) -> None:
        """Make network ``name`` its moving average for good (and drop the average)."""
        if name in self.ema:
            getattr(self, name).load_state_dict(self.ema[name].state_dict())
            del self.ema[name]

    @contextlib.contextmanager
    def generating(self) -> Iterator[None]:
        """Eval mode, no gradients and the averaged generators (where there are any) inside."""
        was_training, was_averaged = self.training, self._use_average
        self.eval()
        self._use_average = True
        try:
            with torch.no_grad():
                yield
        finally:
            self._use_average = was_averaged
            self.train(was_training)

    def load_state_dict(self, state_dict: Mapping, strict: bool = True, assign: bool = False):
        """Also creates (or drops) the moving averages that ``state_dict`` holds (or lacks)."""
        names = {key.split(".")[1] for key in state_dict if key.startswith("ema.")}
        for name in list(self.ema):
            if name not in names:
                del self.ema[name]
        for name in sorted(names):
            self.start_average(name)
        return super().load_state_dict(state_dict, strict=strict, assign=assign)

    # stage 1 -----------------------------------------------------------------------------
    def generate_stage1(self, noise: Tensor) -> Tensor:
        """Whole cells from the causal controller alone, library-size normalised (scGAN)."""
        return self.lsn(self.part("controller")(noise))

    # stage 2 -----------------------------------------------------------------------------
    def tf_expression(
        self,
        noise: Tensor,
        stats: Sequence[BatchStats] | None = None,
        record: list[BatchStats] | None = None,
    ) -> Tensor:
        """Pre-LSN TF expression from the causal controller: (batch, n_tfs)."""
        return self.part("controller")(noise, stats, record)[:, self.tf_index]

    def assemble(self, tf_expression: Tensor, target_expression: Tensor) -> Tensor:
        """Place TF and target columns into whole (pre-LSN) cells in the data's gene order."""
        cells = tf_expression.new_empty(tf_expression.shape[0], self.n_genes)
        cells[:, self.tf_index] = tf_expression
        cells[:, self.target_index] = target_expression
        return cells

    def generate(self, controller_noise: Tensor, target_noise: Tensor) -> Tensor:
        """Cells of the full model: controller -> TFs -> target generators -> LSN."""
        tfs = self.tf_expression(controller_noise)
        targets = self.part("target_generators")(tfs, target_noise)
        return self.lsn(self.assemble(tfs, targets))

    def generate_recorded(
        self, controller_noise: Tensor, target_noise: Tensor
    ) -> tuple[Tensor, GenerationRecord]:
        """:meth:`generate`, also returning what is needed to replay the cells exactly."""
        controller_stats: list[BatchStats] = []
        target_stats: list[BatchStats] = []
        tfs = self.tf_expression(controller_noise, record=controller_stats)
        targets = self.part("target_generators")(tfs, target_noise, record=target_stats)
        raw = self.assemble(tfs, targets)
        scale = self.lsn.scale(raw)
        record = GenerationRecord(
            controller_noise, target_noise, tfs, scale, controller_stats, target_stats
        )
        return raw * scale, record

    @torch.no_grad()
    def calibrate_target_generators(self, controller_noise: Tensor, target_noise: Tensor) -> None:
        """Put every target generator's output on the causal controller's scale for that gene.

        The controller (trained on all genes in stage 1) also produces the targets' pre-LSN
        expression; each target generator's output layer is set so that its pre-activation has
        the same per-gene mean and standard deviation on a batch of cells. Without this, the
        targets' total starts at an arbitrary scale and LSN shrinks or inflates the TFs.
        """
        controller_out = self.controller(controller_noise)
        tfs = controller_out[:, self.tf_index]
        targets = controller_out[:, self.target_index]
        self.target_generators.calibrate_output(
            tfs, target_noise, targets.mean(dim=0), targets.std(dim=0)
        )

    def replay(
        self,
        record: GenerationRecord,
        tf_expression: Tensor | None = None,
        clamp: tuple[Tensor, Tensor] | None = None,
    ) -> Tensor:
        """Re-run the target generators from ``record`` with (optionally changed) pre-LSN TFs.

        Noise, BatchNorm statistics and the per-cell LSN scale are replayed, so with
        ``tf_expression=None`` the recorded cells come back exactly. ``clamp = (genes,
        values)`` sets regulated genes (indices into ``target_index``) to pre-LSN ``values``
        (cells, n) before their descendants read them (see :class:`TargetGenerators`).
        """
        return self.replay_raw(record, tf_expression, clamp) * record.lsn_scale

    def replay_raw(
        self,
        record: GenerationRecord,
        tf_expression: Tensor | None = None,
        clamp: tuple[Tensor, Tensor] | None = None,
    ) -> Tensor:
        """:meth:`replay` before the LSN scale: pre-LSN cells."""
        tfs = record.tf_expression if tf_expression is None else tf_expression
        generators = self.part("target_generators")
        targets = generators(tfs, record.target_noise, stats=record.target_stats, clamp=clamp)
        return self.assemble(tfs, targets)


def labeler_genes(
    tf_index: Sequence[int], target_index: Sequence[int], regulators: Sequence[Sequence[int]]
) -> tuple[list[int], list[int]]:
    """Cell-vector positions of the labelers' inputs (the regulated genes that regulate
    nothing) and outputs (the root TFs, then the regulated TFs).

    A regulated TF is not an input: a labeler would copy it to its own output instead of
    learning what the leaves say about it.
    """
    n_roots = len(tf_index)
    regulating = sorted({r - n_roots for regs in regulators for r in regs if r >= n_roots})
    is_regulator = set(regulating)
    leaves = [g for k, g in enumerate(target_index) if k not in is_regulator]
    return leaves, [*tf_index, *(target_index[k] for k in regulating)]
