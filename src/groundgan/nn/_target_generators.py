"""Per-gene target generators computed block-diagonally.

Every target gene has its own MLP whose input is the expression of its regulators (the TFs of
the imposed GRN) and one noise variable of its own. Genes with the same in-degree have hidden
layers of the same width, so their MLPs are stacked into one group and evaluated with a batched
matrix multiplication (``baddbmm``): the cost is that of the edges, not of the dense
``(edges + genes)^2`` masked layers of the reference implementation, and the function computed is
exactly the same (see ``tests/test_nn_target_generators.py`` for the equivalence).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ._blocks import BN_EPS, BatchStats

NOISE_PER_GENE = 1
#: Above this many GRN edges the paper's rule makes the target generators shallower and narrower.
DENSE_EDGE_LIMIT = 5_000


def paper_depth_width(n_edges: int, depth, width) -> tuple[int, float]:
    """The paper's rule: depth 3 / width 2 up to 5,000 edges, depth 2 / width 1 above
    (``"auto"``); given values are kept."""
    dense = n_edges > DENSE_EDGE_LIMIT
    depth = (2 if dense else 3) if depth == "auto" else int(depth)
    width = (1.0 if dense else 2.0) if width == "auto" else float(width)
    return depth, width


def grouped_batch_norm(
    h: Tensor,
    weight: Tensor,
    bias: Tensor,
    stats: BatchStats | None = None,
    record: list[BatchStats] | None = None,
) -> Tensor:
    """BatchNorm of ``h`` (genes, units, batch) over the batch, with per-(gene, unit) affine.

    Each (gene, unit) row is one channel of torch's fused batch-norm kernel. With gradients
    on (training), the kernel computes the batch statistics itself. Without gradients
    (generation, recording, replay), they are computed explicitly and applied with the
    kernel's inference mode, so that a recorded pass, its replay and an unrecorded pass all
    agree bit for bit. Statistics are (mean, biased variance), each (genes, units).
    """
    genes, units, batch = h.shape
    flat = h.reshape(1, genes * units, batch)
    weight, bias = weight.reshape(-1), bias.reshape(-1)
    if stats is None and torch.is_grad_enabled():
        if record is not None:
            record.append(batch_statistics(h.detach()))
        out = F.batch_norm(flat, None, None, weight, bias, training=True, eps=BN_EPS)
        return out.view(genes, units, batch)
    if stats is None:
        mean, var = batch_statistics(h)
        if record is not None:
            record.append((mean, var))
    else:
        mean, var = stats
    out = F.batch_norm(
        flat, mean.reshape(-1), var.reshape(-1), weight, bias, training=False, eps=BN_EPS
    )
    return out.view(genes, units, batch)


def batch_statistics(h: Tensor) -> BatchStats:
    """Mean and biased variance of ``h`` (genes, units, batch) over the batch, in float32.

    Two passes, the second a vector norm of the centred rows: as accurate as ``var_mean`` and
    about twice as fast on the CPU, where ``var_mean``'s single-pass kernel is slow.
    """
    h = h.float()  # float32 statistics, also under autocast
    mean = h.mean(dim=2)
    var = torch.linalg.vector_norm(h - mean.unsqueeze(2), dim=2).square_().div_(h.shape[2])
    return mean, var


class GeneGroup(nn.Module):
    """The MLPs of ``n_genes`` target genes that share one in-degree ``n_regulators``.

    Weights are stacked along a leading gene dimension, (genes, in, out); activations are
    (genes, units, batch), so layer ``l`` is one ``baddbmm`` of the transposed weights with the
    activations and each (gene, unit) row is a contiguous BatchNorm channel.
    """

    def __init__(self, n_genes: int, n_regulators: int, depth: int, width: float):
        super().__init__()
        n_in = n_regulators + NOISE_PER_GENE
        hidden = max(1, int(round(width * n_in)))
        sizes = [n_in] + [hidden] * depth
        self.weights = nn.ParameterList()
        self.biases = nn.ParameterList()
        self.bn_weights = nn.ParameterList()
        self.bn_biases = nn.ParameterList()
        for fan_in, fan_out in zip(sizes[:-1], sizes[1:], strict=True):
            self.weights.append(nn.Parameter(_he_normal(n_genes, fan_in, fan_out)))
            self.biases.append(nn.Parameter(torch.zeros(n_genes, 1, fan_out)))
            self.bn_weights.append(nn.Parameter(torch.ones(n_genes, fan_out)))
            self.bn_biases.append(nn.Parameter(torch.zeros(n_genes, fan_out)))
        self.out_weight = nn.Parameter(_he_normal(n_genes, sizes[-1], 1))
        self.out_bias = nn.Parameter(torch.zeros(n_genes, 1, 1))
        self.n_genes, self.n_regulators, self.hidden_width = n_genes, n_regulators, hidden

    def forward(
        self,
        x: Tensor,
        stats: Sequence[BatchStats] | None = None,
        record: list[BatchStats] | None = None,
        relu: bool = True,
    ) -> Tensor:
        """``x``: (genes, n_regulators + 1, batch) -> (genes, batch) expression (ReLU'd unless
        ``relu=False``, which returns the output layer's pre-activation)."""
        for i, (w, b) in enumerate(zip(self.weights, self.biases, strict=True)):
            x = torch.baddbmm(b.transpose(1, 2), w.transpose(1, 2), x)
            x = grouped_batch_norm(
                x,
                self.bn_weights[i],
                self.bn_biases[i],
                None if stats is None else stats[i],
                record,
            )
            x = F.relu(x)
        out = torch.baddbmm(self.out_bias, self.out_weight.transpose(1, 2), x).squeeze(1)
        return F.relu(out) if relu else out


def _he_normal(n_genes: int, fan_in: int, fan_out: int) -> Tensor:
    return torch.randn(n_genes, fan_in, fan_out) * math.sqrt(2.0 / fan_in)


class TargetGenerators(nn.Module):
    """One independent MLP per regulated gene, wired by the GRN and computed block-diagonally.

    Parameters
    ----------
    regulators
        For each regulated gene (in output order), the indices of its regulators among the
        *sources*: indices ``0 .. n_roots - 1`` are the root TFs (the inputs), index
        ``n_roots + k`` is the output of regulated gene ``k`` (a TF regulated by another TF).
    depth
        Number of hidden layers (``Linear -> BatchNorm -> ReLU``) per gene.
    width
        Hidden width multiplier: a gene with ``r`` regulators has hidden layers of
        ``round(width * (r + 1))`` units (the ``+ 1`` is its noise input).
    n_roots
        Number of root TFs. ``None``: every index of ``regulators`` is a root TF (a bipartite
        GRN).

    Notes
    -----
    ``forward(tf_expression, noise)`` maps (batch, n_roots) and (batch, n_targets) to
    (batch, n_targets). Gene ``j``'s output depends on its regulators' values and on
    ``noise[:, j]`` only; BatchNorm statistics are per gene and unit, so nothing leaks between
    genes. Genes are generated level by level (a gene's level is one more than its highest
    regulated regulator's, 1 if all its regulators are roots), each level in one grouped pass
    per in-degree; a bipartite GRN is the one-level case.
    """

    def __init__(
        self,
        regulators: Sequence[Sequence[int]],
        depth: int = 3,
        width: float = 2.0,
        n_roots: int | None = None,
    ):
        super().__init__()
        if depth < 1:
            raise ValueError(f"depth must be >= 1, got {depth}")
        if any(len(r) == 0 for r in regulators):
            raise ValueError("every target gene needs at least one regulator")
        n_targets = len(regulators)
        if n_roots is None:
            n_roots = 1 + max(max(r) for r in regulators)
        level = _levels(regulators, n_roots)
        in_degree = np.array([len(r) for r in regulators])
        self.groups = nn.ModuleList()
        #: indices into ``groups`` of each level's groups, level 1 first
        self.level_groups: list[list[int]] = []
        order = []
        for lv in range(1, int(level.max()) + 1):
            self.level_groups.append([])
            in_level = level == lv
            for degree in np.unique(in_degree[in_level]):
                genes = np.flatnonzero(in_level & (in_degree == degree))
                order.extend(genes.tolist())
                index = len(self.groups)
                self.level_groups[-1].append(index)
                self.groups.append(GeneGroup(len(genes), int(degree), depth, width))
                self.register_buffer(f"genes_{index}", torch.as_tensor(genes, dtype=torch.long))
                regs = np.array([regulators[g] for g in genes])
                self.register_buffer(f"regulators_{index}", torch.as_tensor(regs, dtype=torch.long))
                # rows of [noise; roots; generated] that form each gene's input: its
                # regulators, then its noise
                rows = np.concatenate([regs + n_targets, genes[:, None]], axis=1)
                self.register_buffer(
                    f"input_rows_{index}",
                    torch.as_tensor(rows, dtype=torch.long),
                    persistent=False,
                )
        # output position of each gene in the concatenation of the groups' outputs
        self.register_buffer("inverse_order", torch.as_tensor(np.argsort(order), dtype=torch.long))
        self.n_targets, self.n_roots, self.depth, self.width = n_targets, n_roots, depth, width
        self.gene_levels = level

    @property
    def n_levels(self) -> int:
        """Number of generated levels (1 for a bipartite GRN)."""
        return len(self.level_groups)

    def group_inputs(self, index: int, rows: Tensor) -> Tensor:
        """Inputs of group ``index``, (genes, n_regulators + 1, batch): one gather from
        ``rows``, the noise, the root TFs and (beyond level 1) the generated genes as rows."""
        return rows[getattr(self, f"input_rows_{index}")]

    @staticmethod
    def input_rows(tf_expression: Tensor, noise: Tensor) -> Tensor:
        """``[noise; TF expression]`` as contiguous rows, (n_targets + n_roots, batch)."""
        return torch.cat([noise, tf_expression], dim=1).T.contiguous()

    def forward(
        self,
        tf_expression: Tensor,
        noise: Tensor,
        stats: Sequence[BatchStats] | None = None,
        record: list[BatchStats] | None = None,
        relu: bool = True,
        clamp: tuple[Tensor, Tensor] | None = None,
    ) -> Tensor:
        """Regulated genes' expression, (batch, n_targets).

        ``clamp = (genes, values)`` replaces the outputs of regulated genes ``genes`` (n,) by
        ``values`` (batch, n) before any later level reads them: the do-operator.
        ``relu=False`` returns the output layers' pre-activations (downstream levels still
        read the ReLU'd values).
        """
        rows = self.input_rows(tf_expression, noise)
        if self.n_levels == 1 and clamp is None:
            outputs = self._level(0, rows, stats, record, relu)
            return torch.cat(outputs, dim=0)[self.inverse_order].T
        return self._cascade(rows, stats, record, relu, clamp)

    def _level(
        self,
        level: int,
        rows: Tensor,
        stats: Sequence[BatchStats] | None,
        record: list[BatchStats] | None,
        relu: bool,
    ) -> list[Tensor]:
        """Outputs (genes, batch) of each group of ``level`` (0-based)."""
        outputs = []
        for i in self.level_groups[level]:
            group = self.groups[i]
            offset = i * self.depth
            group_stats = None if stats is None else stats[offset : offset + self.depth]
            outputs.append(group(self.group_inputs(i, rows), group_stats, record, relu))
        return outputs

    def _cascade(self, rows, stats, record, relu, clamp) -> Tensor:
        """Level by level, each level reading the roots and the levels before it."""
        generated = rows.new_zeros(self.n_targets, rows.shape[1])
        pre = rows.new_zeros(self.n_targets, rows.shape[1]) if not relu else None
        if clamp is not None:
            clamp_genes, clamp_values = clamp[0], clamp[1].T.to(rows.dtype)
            generated = generated.index_copy(0, clamp_genes, clamp_values)
        for level in range(self.n_levels):
            level_rows = rows if level == 0 else torch.cat([rows, generated], dim=0)
            outputs = self._level(level, level_rows, stats, record, relu=False)
            genes = torch.cat([getattr(self, f"genes_{i}") for i in self.level_groups[level]])
            out = torch.cat(outputs, dim=0)
            if pre is not None:
                pre = pre.index_copy(0, genes, out)
            generated = generated.index_copy(0, genes, F.relu(out))
            if clamp is not None:
                generated = generated.index_copy(0, clamp_genes, clamp_values)
        return (generated if relu else pre).T

    @torch.no_grad()
    def calibrate_output(
        self, tf_expression: Tensor, noise: Tensor, mean: Tensor, std: Tensor
    ) -> None:
        """Rescale each gene's output layer so its pre-activation has the given mean and std.

        An affine change of the last layer only (weights scaled, bias shifted): the per-gene
        structure and independence are untouched. Used to start stage 2 with targets on the
        causal controller's scale, so that LSN does not shrink or inflate the TFs.
        """
        for level in range(self.n_levels):
            # one level at a time: rescaling a level changes what the next level reads
            pre = self(tf_expression, noise, relu=False)  # (batch, n_targets)
            factor = std / pre.std(dim=0).clamp_min(1e-8)
            for i in self.level_groups[level]:
                group, genes = self.groups[i], getattr(self, f"genes_{i}")
                # new pre-activation: factor * (pre - bias) + new bias
                weighted_mean = pre.mean(dim=0)[genes] - group.out_bias.view(-1)
                shift = mean[genes] - weighted_mean * factor[genes]
                group.out_weight.mul_(factor[genes].view(-1, 1, 1))
                group.out_bias.copy_(shift.view(-1, 1, 1))

    @property
    def n_bn_layers(self) -> int:
        """Number of recorded BatchNorm statistics per forward pass."""
        return sum(len(g.weights) for g in self.groups)

    def extra_repr(self) -> str:
        widths = sorted({g.hidden_width for g in self.groups})
        levels = f", levels={self.n_levels}" if self.n_levels > 1 else ""
        return (
            f"n_targets={self.n_targets}, depth={self.depth}, width={self.width:g}, "
            f"groups={len(self.groups)}{levels}, hidden widths {widths[0]}..{widths[-1]}"
        )


def _levels(regulators: Sequence[Sequence[int]], n_roots: int) -> np.ndarray:
    """Level of each regulated gene: 1 + the highest level among its regulators (roots: 0)."""
    n_targets = len(regulators)
    level = np.zeros(n_targets, dtype=np.int64)
    for _ in range(n_targets + 1):
        changed = False
        for j, regs in enumerate(regulators):
            lv = 1 + max((level[r - n_roots] if r >= n_roots else 0) for r in regs)
            if lv != level[j]:
                level[j], changed = lv, True
        if not changed:
            return level
    raise ValueError("the regulators of the target generators form a cycle")
