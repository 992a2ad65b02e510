"""Building blocks: fully connected layers with batch-statistics BatchNorm, LSN, initialisation.

BatchNorm everywhere in groundgan normalises with the statistics of the current batch, in
training and in generation alike (as the reference implementation generates cells). No running
statistics are kept. A forward pass can *record* the batch statistics of each BatchNorm layer
and a later pass can *replay* them, which is what exact perturbation replay needs.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

BN_EPS = 1e-5

#: Batch statistics of one BatchNorm layer: (mean, biased variance), each of shape (features,).
BatchStats = tuple[Tensor, Tensor]


def batch_norm(
    h: Tensor,
    weight: Tensor,
    bias: Tensor,
    stats: BatchStats | None = None,
    record: list[BatchStats] | None = None,
) -> Tensor:
    """BatchNorm over dimension 0 of ``h`` (batch, features) with batch or replayed statistics.

    ``stats`` replays given statistics; otherwise the batch's own are used (and appended to
    ``record`` when a list is given).
    """
    if stats is not None:
        return F.batch_norm(h, stats[0], stats[1], weight, bias, training=False, eps=BN_EPS)
    if record is not None:
        var, mean = torch.var_mean(h.detach(), dim=0, unbiased=False)
        record.append((mean, var))
    return F.batch_norm(h, None, None, weight, bias, training=True, eps=BN_EPS)


def he_init_(linear: nn.Linear) -> None:
    """He (Kaiming) initialisation for a layer followed by ReLU; zero bias."""
    nn.init.kaiming_normal_(linear.weight, nonlinearity="relu")
    nn.init.zeros_(linear.bias)


def xavier_init_(linear: nn.Linear) -> None:
    """Xavier (Glorot) initialisation for a layer with linear activation; zero bias."""
    nn.init.xavier_uniform_(linear.weight)
    nn.init.zeros_(linear.bias)


class DenseLayer(nn.Module):
    """``Linear -> [BatchNorm1d] -> ReLU``, He-initialised."""

    def __init__(self, in_features: int, out_features: int, batch_norm: bool = True):
        super().__init__()
        self.linear = nn.Linear(in_features, out_features)
        he_init_(self.linear)
        if batch_norm:
            self.bn_weight = nn.Parameter(torch.ones(out_features))
            self.bn_bias = nn.Parameter(torch.zeros(out_features))
        self.batch_norm = batch_norm

    def forward(
        self, x: Tensor, stats: BatchStats | None = None, record: list[BatchStats] | None = None
    ) -> Tensor:
        h = self.linear(x)
        if self.batch_norm:
            h = batch_norm(h, self.bn_weight, self.bn_bias, stats, record)
        return F.relu(h)


class MLP(nn.Module):
    """Hidden :class:`DenseLayer` blocks then a linear output layer (optionally ReLU'd).

    Parameters
    ----------
    in_features, hidden, out_features
        Layer sizes.
    batch_norm
        BatchNorm in the hidden layers (generators, labelers) or not (critics).
    relu_output
        ReLU on the output (He init) for expression outputs; linear output (Xavier) otherwise.
    """

    def __init__(
        self,
        in_features: int,
        hidden: Sequence[int],
        out_features: int,
        batch_norm: bool = True,
        relu_output: bool = False,
    ):
        super().__init__()
        sizes = [in_features, *hidden]
        self.hidden = nn.ModuleList(
            DenseLayer(a, b, batch_norm) for a, b in zip(sizes[:-1], sizes[1:], strict=True)
        )
        self.output = nn.Linear(sizes[-1], out_features)
        (he_init_ if relu_output else xavier_init_)(self.output)
        self.relu_output = relu_output

    def forward(
        self,
        x: Tensor,
        stats: Sequence[BatchStats] | None = None,
        record: list[BatchStats] | None = None,
    ) -> Tensor:
        for i, layer in enumerate(self.hidden):
            x = layer(x, None if stats is None else stats[i], record)
        x = self.output(x)
        return F.relu(x) if self.relu_output else x


class LibrarySizeNormalization(nn.Module):
    """LSN: scale each cell to sum to ``library_size`` (an all-zero cell stays zero)."""

    def __init__(self, library_size: float):
        super().__init__()
        self.library_size = float(library_size)

    def scale(self, x: Tensor) -> Tensor:
        """Per-cell factor ``library_size / sum(x)`` of shape (cells, 1); 0 for all-zero cells."""
        total = x.sum(dim=1, keepdim=True)
        positive = total > 0
        # divide by a safe denominator so that all-zero cells give no inf/NaN gradients
        safe_total = torch.where(positive, total, torch.ones_like(total))
        return torch.where(positive, self.library_size / safe_total, torch.zeros_like(total))

    def forward(self, x: Tensor, scale: Tensor | None = None) -> Tensor:
        return x * (self.scale(x) if scale is None else scale)

    def extra_repr(self) -> str:
        return f"library_size={self.library_size:g}"
