"""Conditional GAN baselines: cscGAN (projection critic, conditional BatchNorm) and cWGAN.

Both are trained by :class:`ConditionalStage`, a :class:`~groundgan.train.WGANGPStage` whose
real minibatches carry their cells' labels: the fake cells of a step are generated with the
labels of the step's real cells (so each batch has the training ratios of the labels), and the
critic judges every cell with its label. The gradient penalty is taken with respect to the
cells only; a label is a condition, never interpolated.

Generation with batch-statistics BatchNorm needs care: a block of cells of one label would be
normalised with statistics no training batch ever had (for cWGAN, whose label enters the first
layer as a constant input, BatchNorm would even subtract the label away). Each block of
requested cells is therefore generated with the BatchNorm statistics of a *reference batch*
whose labels are drawn from the training ratios, as in training (record, then replay, with
:func:`groundgan.nn.batch_norm`).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from anndata import AnnData
from torch import Tensor, nn

from .._validation import InvalidInputError
from ..nn import (
    BatchStats,
    CausalController,
    Critic,
    LibrarySizeNormalization,
    batch_norm,
    he_init_,
)
from ..train import PerformanceOptions, StageSettings, WGANGPStage
from ._gan import _GANBaseline, _LabelledStage

__all__ = ["CWGAN", "CscGAN"]


# ----------------------------------------------------------------------------- networks


class ConditionalDenseLayer(nn.Module):
    """``Linear -> BatchNorm (no affine) -> per-label scale and shift -> ReLU``.

    Conditional BatchNorm (de Vries et al. 2017; scGAN's cscGAN): the affine parameters of the
    BatchNorm are looked up per label, starting at scale 1 and shift 0.
    """

    def __init__(self, in_features: int, out_features: int, n_labels: int):
        super().__init__()
        self.linear = nn.Linear(in_features, out_features)
        he_init_(self.linear)
        self.scale = nn.Embedding(n_labels, out_features)
        self.shift = nn.Embedding(n_labels, out_features)
        nn.init.ones_(self.scale.weight)
        nn.init.zeros_(self.shift.weight)

    def forward(
        self,
        x: Tensor,
        labels: Tensor,
        stats: BatchStats | None = None,
        record: list[BatchStats] | None = None,
    ) -> Tensor:
        h = batch_norm(self.linear(x), None, None, stats, record)
        return F.relu(h * self.scale(labels) + self.shift(labels))


class ConditionalBatchNormGenerator(nn.Module):
    """cscGAN's generator: ``noise -> hidden (Linear, conditional BatchNorm, ReLU) -> n_genes``
    with ReLU output (pre-LSN)."""

    def __init__(self, latent_dim: int, hidden: Sequence[int], n_genes: int, n_labels: int):
        super().__init__()
        sizes = [latent_dim, *hidden]
        self.hidden = nn.ModuleList(
            ConditionalDenseLayer(a, b, n_labels)
            for a, b in zip(sizes[:-1], sizes[1:], strict=True)
        )
        self.output = nn.Linear(sizes[-1], n_genes)
        he_init_(self.output)

    def forward(
        self,
        noise: Tensor,
        labels: Tensor,
        stats: Sequence[BatchStats] | None = None,
        record: list[BatchStats] | None = None,
    ) -> Tensor:
        h = noise
        for i, layer in enumerate(self.hidden):
            h = layer(h, labels, None if stats is None else stats[i], record)
        return F.relu(self.output(h))


class ProjectionCritic(nn.Module):
    """Projection critic (Miyato & Koyama 2018): ``linear(h) + <embed(label), h>``.

    ``h`` is the last hidden layer of a :class:`~groundgan.nn.Critic` body (Linear, ReLU; no
    BatchNorm).
    """

    def __init__(self, n_genes: int, hidden: Sequence[int], n_labels: int):
        super().__init__()
        self.body = Critic(n_genes, hidden)
        self.embedding = nn.Embedding(n_labels, hidden[-1])
        nn.init.xavier_uniform_(self.embedding.weight)

    def forward(self, cells: Tensor, labels: Tensor) -> Tensor:
        h = cells
        for layer in self.body.hidden:
            h = layer(h)
        projection = (self.embedding(labels) * h).sum(dim=1, keepdim=True)
        return self.body.output(h) + projection


class ConcatenationGenerator(nn.Module):
    """cWGAN's generator: a :class:`~groundgan.nn.CausalController` on ``[noise, one-hot label]``."""

    def __init__(self, latent_dim: int, hidden: Sequence[int], n_genes: int, n_labels: int):
        super().__init__()
        self.n_labels = n_labels
        self.network = CausalController(latent_dim + n_labels, hidden, n_genes)

    def forward(
        self,
        noise: Tensor,
        labels: Tensor,
        stats: Sequence[BatchStats] | None = None,
        record: list[BatchStats] | None = None,
    ) -> Tensor:
        one_hot = F.one_hot(labels, self.n_labels).to(noise.dtype)
        return self.network(torch.cat([noise, one_hot], dim=1), stats, record)


class ConcatenationCritic(nn.Module):
    """cWGAN's critic: a :class:`~groundgan.nn.Critic` on ``[cells, label_scale * one-hot label]``."""

    def __init__(
        self, n_genes: int, hidden: Sequence[int], n_labels: int, label_scale: float = 1.0
    ):
        super().__init__()
        self.n_labels = n_labels
        self.label_scale = float(label_scale)
        self.network = Critic(n_genes + n_labels, hidden)

    def forward(self, cells: Tensor, labels: Tensor) -> Tensor:
        one_hot = F.one_hot(labels, self.n_labels).to(cells.dtype) * self.label_scale
        return self.network(torch.cat([cells, one_hot], dim=1))

    def extra_repr(self) -> str:
        return f"label_scale={self.label_scale:g}"


class ConditionalGANModule(nn.Module):
    """Generator ``(noise, labels) -> cells``, critic ``(cells, labels) -> score``, and LSN."""

    def __init__(
        self, generator: nn.Module, critic: nn.Module, latent_dim: int, library_size: float
    ):
        super().__init__()
        self.generator = generator
        self.critic = critic
        self.lsn = LibrarySizeNormalization(library_size)
        self.latent_dim = latent_dim

    def generate(
        self,
        noise: Tensor,
        labels: Tensor,
        stats: Sequence[BatchStats] | None = None,
        record: list[BatchStats] | None = None,
    ) -> Tensor:
        """Library-size-normalised cells of the given labels."""
        return self.lsn(self.generator(noise, labels, stats, record))


# ----------------------------------------------------------------------------- training


class LabelledCritic(nn.Module):
    """A conditional critic bound to the labels of the current minibatch: ``critic(cells)``.

    This is what lets :class:`~groundgan.train.WGANGPStage`'s critic step, generator step and
    gradient penalty (which call ``critic(cells)``) run unchanged on a conditional critic.
    """

    def __init__(self, critic: nn.Module, current_labels: Callable[[], Tensor]):
        super().__init__()
        self.critic = critic
        self._current_labels = current_labels

    def forward(self, cells: Tensor) -> Tensor:
        return self.critic(cells, self._current_labels())


class ConditionalStage(_LabelledStage):
    """WGAN-GP stage of a conditional model: each real minibatch brings its cells' labels.

    :meth:`real_batch` draws cells and keeps their labels; :meth:`generate` makes fake cells
    of those labels; the critic scores cells with those labels.
    """

    def __init__(
        self,
        module: ConditionalGANModule,
        data: Tensor,
        labels: Tensor,
        settings: StageSettings,
        rng: torch.Generator,
        name: str = "conditional",
        *,
        performance: PerformanceOptions | None = None,
    ):
        self.name = name
        self.labels = labels
        self.batch_labels: Tensor | None = None
        self._labelled_critic = LabelledCritic(module.critic, lambda: self.batch_labels)
        super().__init__(module, data, settings, rng, performance=performance)

    @property
    def critic(self) -> nn.Module:
        return self._labelled_critic

    def generator_parameters(self):
        return self.module.generator.parameters()

    def real_batch(self) -> Tensor:
        index = torch.randint(
            self.data.shape[0],
            (self.settings.batch_size,),
            generator=self.rng,
            device=self.data.device,
        )
        self.batch_labels = self.labels[index]
        return self.data[index]

    def generate(self, n: int) -> Tensor:
        noise = torch.randn(n, self.module.latent_dim, generator=self.rng, device=self.data.device)
        return self.module.generate(noise, self.batch_labels[:n])


# ----------------------------------------------------------------------------- the models


class _ConditionalGAN(_GANBaseline):
    """What cscGAN and cWGAN share: the conditional stage and reference-batch generation."""

    _conditional = True

    def _networks(self, n_labels: int) -> tuple[nn.Module, nn.Module]:
        """(generator, critic) of the model."""
        raise NotImplementedError

    def _build_module(self) -> ConditionalGANModule:
        generator, critic = self._networks(len(self.labels_))
        return ConditionalGANModule(
            generator, critic, self.init_params_["latent_dim"], self.library_size
        )

    def _new_stage(self, data, labels, settings, rng, performance) -> WGANGPStage:
        return ConditionalStage(
            self.module,
            data,
            labels,
            settings,
            rng,
            name=type(self).__name__,
            performance=performance,
        )

    def _generate_block(self, labels: Tensor, rng: torch.Generator) -> Tensor:
        """Cells of ``labels`` with the BatchNorm statistics of a training-like reference batch.

        The reference batch (``sample_block_size`` cells, labels drawn from the training ratios)
        is generated first and its statistics recorded; then the block's noise is drawn (a
        full block, trimmed) and the requested cells are generated with those statistics.
        """
        m, block, device = self.module, self.sample_block_size, labels.device
        ratios = torch.tensor(self.label_sizes_, dtype=torch.float64, device=device)
        reference_labels = torch.multinomial(ratios, block, replacement=True, generator=rng)
        reference_noise = torch.randn(block, m.latent_dim, generator=rng, device=device)
        stats: list[BatchStats] = []
        m.generator(reference_noise, reference_labels, record=stats)
        noise = torch.randn(block, m.latent_dim, generator=rng, device=device)
        return m.generate(noise[: len(labels)], labels, stats=stats)


class CscGAN(_ConditionalGAN):
    """cscGAN (Marouf et al. 2020) with projection-based conditioning on cell labels.

    Generator ``noise -> hidden (Linear, conditional BatchNorm, ReLU) -> n_genes``, ReLU output,
    LSN: each hidden BatchNorm has per-label scale and shift. Critic: projection discriminator
    (Miyato & Koyama 2018), ``score = linear(h) + <embed(label), h>`` with ``h`` the last hidden
    layer of a ``n_genes -> hidden (Linear, ReLU)`` network. Trained with scGAN's WGAN-GP recipe.

    Parameters
    ----------
    adata
        Library-size-normalised cells registered with :meth:`setup_anndata` and a
        ``labels_key`` (e.g. the clusters of :func:`groundgan.pp.cluster`).
    latent_dim
        Length of the generator's Gaussian noise (paper: 128).
    generator_hidden
        Hidden layer sizes of the generator (paper: 256, 512, 1024).
    critic_hidden
        Hidden layer sizes of the critic (paper: 1024, 512, 256).
    sample_block_size
        Cells are generated in blocks of this size (BatchNorm uses batch statistics).
    seed
        Seed of the weight initialisation.

    Examples
    --------
    >>> gg.pp.cluster(train)                               # obs["cluster"]
    >>> gg.baselines.CscGAN.setup_anndata(train, labels_key="cluster")
    >>> model = gg.baselines.CscGAN(train)
    >>> model.train()
    >>> sim = model.sample(n_cells=1000, seed=0)           # training ratios of the clusters
    >>> sim = model.sample(labels={"0": 100, "2": 50})     # exactly these
    """

    _description = "conditional WGAN-GP: projection critic, conditional BatchNorm generator, LSN"

    def _networks(self, n_labels: int) -> tuple[nn.Module, nn.Module]:
        p = self.init_params_
        generator = ConditionalBatchNormGenerator(
            p["latent_dim"], p["generator_hidden"], self.n_genes, n_labels
        )
        return generator, ProjectionCritic(self.n_genes, p["critic_hidden"], n_labels)


class CWGAN(_ConditionalGAN):
    """Conditional WGAN-GP by concatenation (cGAN framework, as in the GRouNdGAN paper).

    A one-hot label is concatenated to the generator's noise and to the cells the critic
    judges. Generator: scGAN's (Linear, BatchNorm, ReLU hidden layers, ReLU output, LSN);
    critic: scGAN's on ``n_genes + n_labels`` inputs. Trained with scGAN's WGAN-GP recipe.

    Parameters
    ----------
    adata
        Library-size-normalised cells registered with :meth:`setup_anndata` and a
        ``labels_key``.
    latent_dim
        Length of the generator's Gaussian noise (paper: 128).
    generator_hidden
        Hidden layer sizes of the generator (paper: 256, 512, 1024).
    critic_hidden
        Hidden layer sizes of the critic (paper: 1024, 512, 256).
    sample_block_size
        Cells are generated in blocks of this size (BatchNorm uses batch statistics).
    seed
        Seed of the weight initialisation.
    label_scale
        Value of the label's one-hot entry in the critic's input (1: a plain one-hot, as in the
        paper). Next to expression values normalised to 20,000 per cell a plain one-hot is a
        tiny input and the critic learns to use it slowly; a larger value (e.g. 1000) lets
        short runs learn the conditioning. The generator's one-hot is always 0/1, on the
        scale of its Gaussian noise.
    """

    _description = "conditional WGAN-GP: one-hot label concatenated to noise and critic input, LSN"

    def __init__(
        self,
        adata: AnnData,
        *,
        latent_dim: int = 128,
        generator_hidden: Sequence[int] = (256, 512, 1024),
        critic_hidden: Sequence[int] = (1024, 512, 256),
        sample_block_size: int = 1024,
        seed: int = 0,
        label_scale: float = 1.0,
    ):
        super().__init__(
            adata,
            latent_dim=latent_dim,
            generator_hidden=generator_hidden,
            critic_hidden=critic_hidden,
            sample_block_size=sample_block_size,
            seed=seed,
            label_scale=label_scale,
        )

    def _check_model_params(self, params: dict[str, Any]) -> dict[str, Any]:
        scale = params.pop("label_scale", 1.0)
        super()._check_model_params(params)
        valid = isinstance(scale, (int, float)) and not isinstance(scale, bool)
        if not valid or not math.isfinite(scale) or scale <= 0:
            raise InvalidInputError(f"label_scale must be a positive number, got {scale!r}")
        return {"label_scale": float(scale)}

    def _networks(self, n_labels: int) -> tuple[nn.Module, nn.Module]:
        p = self.init_params_
        generator = ConcatenationGenerator(
            p["latent_dim"], p["generator_hidden"], self.n_genes, n_labels
        )
        critic = ConcatenationCritic(
            self.n_genes, p["critic_hidden"], n_labels, p.get("label_scale", 1.0)
        )
        return generator, critic
