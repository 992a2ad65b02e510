"""The reference implementation's dense masked formulation of the target generators.

The published GRouNdGAN code builds all target generators as *one* network over all genes:
the input is ``[all TFs, all target noises]``, every hidden layer holds every gene's units side by
side, and each dense weight matrix is multiplied by a fixed 0/1 mask that keeps only the
entries inside a gene's own block (its regulators and its noise into its first layer, its own
units into the next layers and into its output). :class:`DenseMaskedTargetGenerators` is that
formulation, built from the weights of a :class:`groundgan.nn.TargetGenerators`, so it computes
the same function; it is a drop-in replacement (same ``forward`` signature) used by
``bench_train.py --dense-reference`` to time both side by side.

Masked entries stay exactly zero under training (their gradient is masked to zero, and AdamW's
update and decoupled weight decay of a zero entry with zero gradient are zero), so the dense
network keeps computing the block network's function while it trains.

:func:`dense_size` and :func:`dense_training_bytes` give the size of the dense form without
building it (for the PBMC-size estimate).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from groundgan.nn import TargetGenerators
from groundgan.nn._blocks import BN_EPS, BatchStats

#: AdamW with AMSGrad keeps three tensors per parameter (exp_avg, exp_avg_sq, max_exp_avg_sq).
ADAMW_AMSGRAD_STATES = 3


class DenseMaskedTargetGenerators(nn.Module):
    """All target generators as dense layers with fixed block masks (the reference's form).

    Parameters
    ----------
    n_tfs
        Number of TF inputs.
    regulators
        For each target (in output order), its regulators' indices among the TF inputs.
    hidden_widths
        Hidden units of each target's MLP (the same in every hidden layer of that target).
    depth
        Hidden layers.

    Notes
    -----
    Hidden units are laid out gene after gene in target order. ``forward(tf_expression,
    noise)`` maps (batch, n_tfs) and (batch, n_targets) to (batch, n_targets) like
    :class:`~groundgan.nn.TargetGenerators`; replayed/recorded BatchNorm statistics are per
    dense layer, shape (total hidden units,).
    """

    def __init__(
        self,
        n_tfs: int,
        regulators: Sequence[Sequence[int]],
        hidden_widths: Sequence[int],
        depth: int,
    ):
        super().__init__()
        n_targets = len(regulators)
        widths = np.asarray(hidden_widths, dtype=np.int64)
        starts = np.concatenate([[0], np.cumsum(widths)])
        total = int(starts[-1])
        self.n_tfs, self.n_targets, self.depth, self.total_hidden = n_tfs, n_targets, depth, total
        self.register_buffer("starts", torch.as_tensor(starts[:-1]))
        self.register_buffer("widths", torch.as_tensor(widths))
        self.weights = nn.ParameterList()
        self.biases = nn.ParameterList()
        self.bn_weights = nn.ParameterList()
        self.bn_biases = nn.ParameterList()
        for layer in range(depth):
            fan_in = n_tfs + n_targets if layer == 0 else total
            self.weights.append(nn.Parameter(torch.zeros(fan_in, total)))
            self.biases.append(nn.Parameter(torch.zeros(total)))
            self.bn_weights.append(nn.Parameter(torch.ones(total)))
            self.bn_biases.append(nn.Parameter(torch.zeros(total)))
            mask = first_layer_mask(n_tfs, regulators, starts) if layer == 0 else None
            self.register_buffer(f"mask_{layer}", mask if mask is not None else block_mask(starts))
        self.out_weight = nn.Parameter(torch.zeros(total, n_targets))
        self.out_bias = nn.Parameter(torch.zeros(n_targets))
        self.register_buffer("out_mask", output_mask(starts))

    def masks(self) -> list[Tensor]:
        """The 0/1 masks of the hidden layers."""
        return [getattr(self, f"mask_{layer}") for layer in range(self.depth)]

    @property
    def n_bn_layers(self) -> int:
        """Number of recorded BatchNorm statistics per forward pass."""
        return self.depth

    def forward(
        self,
        tf_expression: Tensor,
        noise: Tensor,
        stats: Sequence[BatchStats] | None = None,
        record: list[BatchStats] | None = None,
        relu: bool = True,
    ) -> Tensor:
        h = torch.cat([tf_expression, noise], dim=1)
        for layer, mask in enumerate(self.masks()):
            h = torch.addmm(self.biases[layer], h, self.weights[layer] * mask)
            h = dense_batch_norm(
                h,
                self.bn_weights[layer],
                self.bn_biases[layer],
                None if stats is None else stats[layer],
                record,
            )
            h = F.relu(h)
        out = torch.addmm(self.out_bias, h, self.out_weight * self.out_mask)
        return F.relu(out) if relu else out

    @classmethod
    def from_target_generators(
        cls, tg: TargetGenerators, n_tfs: int
    ) -> DenseMaskedTargetGenerators:
        """The dense masked network computing the same function as ``tg`` (weights copied)."""
        regulators, widths = block_structure(tg)
        depth = len(tg.groups[0].weights)
        dense = cls(n_tfs, regulators, widths, depth)
        dense.to(next(tg.parameters()).device)
        with torch.no_grad():
            copy_block_weights(tg, dense)
        return dense


def dense_batch_norm(
    h: Tensor,
    weight: Tensor,
    bias: Tensor,
    stats: BatchStats | None,
    record: list[BatchStats] | None,
) -> Tensor:
    """BatchNorm over the batch with batch statistics (or replayed ones), per unit."""
    if stats is None:
        var, mean = torch.var_mean(h, dim=0, unbiased=False)
        if record is not None:
            record.append((mean.detach(), var.detach()))
    else:
        mean, var = stats
    return (h - mean) * torch.rsqrt(var + BN_EPS) * weight + bias


def block_structure(tg: TargetGenerators) -> tuple[list[list[int]], list[int]]:
    """Per target (output order): its regulators and its hidden width, read from ``tg``."""
    regulators: list[list[int]] = [[] for _ in range(tg.n_targets)]
    widths = [0] * tg.n_targets
    for i, group in enumerate(tg.groups):
        genes = getattr(tg, f"genes_{i}").tolist()
        regs = getattr(tg, f"regulators_{i}").tolist()
        for gene, gene_regs in zip(genes, regs, strict=True):
            regulators[gene] = list(gene_regs)
            widths[gene] = group.hidden_width
    return regulators, widths


def first_layer_mask(n_tfs: int, regulators: Sequence[Sequence[int]], starts: np.ndarray) -> Tensor:
    """(n_tfs + n_targets, total): gene ``j``'s units see its regulators and its own noise."""
    n_targets = len(regulators)
    mask = torch.zeros(n_tfs + n_targets, int(starts[-1]))
    for j, regs in enumerate(regulators):
        cols = slice(int(starts[j]), int(starts[j + 1]))
        mask[list(regs), cols] = 1.0
        mask[n_tfs + j, cols] = 1.0
    return mask


def block_mask(starts: np.ndarray) -> Tensor:
    """(total, total) block-diagonal mask: each gene's units feed only its own next units."""
    total = int(starts[-1])
    gene_of_unit = torch.as_tensor(np.repeat(np.arange(len(starts) - 1), np.diff(starts)))
    mask = torch.zeros(total, total)
    mask[gene_of_unit[:, None] == gene_of_unit[None, :]] = 1.0
    return mask


def output_mask(starts: np.ndarray) -> Tensor:
    """(total, n_targets): gene ``j``'s last hidden units feed only output ``j``."""
    n_targets = len(starts) - 1
    gene_of_unit = torch.as_tensor(np.repeat(np.arange(n_targets), np.diff(starts)))
    mask = torch.zeros(int(starts[-1]), n_targets)
    mask[torch.arange(len(gene_of_unit)), gene_of_unit] = 1.0
    return mask


def copy_block_weights(tg: TargetGenerators, dense: DenseMaskedTargetGenerators) -> None:
    """Write every gene's block weights into its place in the dense layers."""
    starts = dense.starts
    for i, group in enumerate(tg.groups):
        genes = getattr(tg, f"genes_{i}")
        regs = getattr(tg, f"regulators_{i}")
        units = starts[genes][:, None] + torch.arange(group.hidden_width, device=starts.device)
        noise_rows = (dense.n_tfs + genes)[:, None]
        w0 = group.weights[0]  # (genes, n_regulators + 1, hidden)
        dense.weights[0][regs[:, :, None], units[:, None, :]] = w0[:, :-1, :]
        dense.weights[0][noise_rows, units] = w0[:, -1, :]
        for layer in range(1, len(group.weights)):
            dense.weights[layer][units[:, :, None], units[:, None, :]] = group.weights[layer]
        for layer in range(len(group.weights)):
            dense.biases[layer][units] = group.biases[layer][:, 0, :]
            dense.bn_weights[layer][units] = group.bn_weights[layer]
            dense.bn_biases[layer][units] = group.bn_biases[layer]
        dense.out_weight[units, genes[:, None]] = group.out_weight[:, :, 0]
        dense.out_bias[genes] = group.out_bias[:, 0, 0]


# ------------------------------------------------------------------------------- sizes
@dataclass(frozen=True)
class DenseSize:
    """Size of the dense masked target generators of a GRN."""

    n_inputs: int
    total_hidden: int
    depth: int
    n_targets: int
    parameters: int
    nonzero_parameters: int


def dense_size(n_tfs: int, in_degrees: Sequence[int], depth: int, width: float) -> DenseSize:
    """Parameters of the dense form (and how many are inside the gene blocks)."""
    degrees = np.asarray(in_degrees, dtype=np.int64)
    hidden = np.maximum(1, np.round(width * (degrees + 1)).astype(np.int64))
    n_targets, total = len(degrees), int(hidden.sum())
    n_inputs = n_tfs + n_targets
    weights = n_inputs * total + (depth - 1) * total * total + total * n_targets
    per_unit = depth * 3 * total + n_targets  # biases, BatchNorm scale and shift; output bias
    nonzero = int(
        ((degrees + 1) * hidden).sum() + (depth - 1) * (hidden * hidden).sum() + hidden.sum()
    )
    return DenseSize(n_inputs, total, depth, n_targets, weights + per_unit, nonzero + per_unit)


def dense_training_bytes(size: DenseSize, bytes_per_value: int = 4) -> dict[str, int]:
    """Bytes the dense form holds while training with AdamW (AMSGrad), without activations.

    Weights, their gradients, three optimiser states per weight, one mask value per weight
    (the masks are stored in the weights' dtype, as in the reference) and the masked weight
    products ``weight * mask``, which the generator's backward pass keeps (one per layer).
    """
    weights = size.parameters * bytes_per_value
    masks = (
        size.parameters - size.depth * 3 * size.total_hidden - size.n_targets
    ) * bytes_per_value
    return {
        "weights": weights,
        "gradients": weights,
        "optimizer_state": ADAMW_AMSGRAD_STATES * weights,
        "masks": masks,
        "masked_weight_products": masks,
        "total": (2 + ADAMW_AMSGRAD_STATES) * weights + 2 * masks,
    }
