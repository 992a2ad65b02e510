"""GAN baselines: what they share (setup, training, block sampling, save/load) and scGAN.

Every GAN baseline is a WGAN-GP whose generator ends in an LSN layer, trained with the paper's
stage-1 recipe by the same stage classes and loop as GroundGAN (:mod:`groundgan.train`).
:class:`ScGAN` is GroundGAN's causal controller trained alone; the conditional models
(:class:`~groundgan.baselines.CscGAN`, :class:`~groundgan.baselines.CWGAN`) live in
``_conditional.py``. A subclass provides its torch module, its training stage and how a block
of cells is generated; everything that touches AnnData lives here.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from functools import partial
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pandas as pd
import torch
from anndata import AnnData
from torch import Tensor, nn

from .._devices import resolve_device
from .._files import (
    check_same_genes,
    check_save_dir,
    load_module_state,
    torch_bytes,
)
from .._seeds import check_seed, resolve_seed
from .._validation import (
    InvalidInputError,
    check_finite_nonnegative,
    check_library_normalized,
    check_positive_int,
    check_unique,
    format_names,
    matrix_of,
    to_dense,
)
from ..model._base import (
    MIN_CELLS,
    Simulator,
    batch_size_for,
    check_enough_cells,
    checkpoint_fingerprint,
    resolve_library_size,
    verify_model_files,
    write_model_files,
)
from ..model._monitor import Validation, validation_frame
from ..nn import CausalController, Critic, LibrarySizeNormalization
from ..train import (
    ControllerStage,
    PerformanceOptions,
    StageSettings,
    TrainingRunner,
    WGANGPStage,
    performance_options,
)
from ._base import (
    NotTrainedError,
    _check_labels,
    _label_order,
    cells_per_label,
    setup_record,
    simulated_anndata,
)

__all__ = ["ScGAN"]

#: Files of a saved GAN baseline (``labels.csv`` only for conditional models).
WEIGHTS_FILE, META_FILE, GENES_FILE = "model.pt", "model.json", "var_names.csv"
LABELS_FILE, HISTORY_FILE = "labels.csv", "history.csv"
#: The only label of an unconditional model.
ALL_CELLS = "all"


# ----------------------------------------------------------------------------- checks


def check_hidden(hidden: Sequence[int], name: str) -> list[int]:
    """A non-empty list of positive layer widths."""
    if isinstance(hidden, (str, bytes)) or not isinstance(hidden, Sequence) or not hidden:
        raise InvalidInputError(
            f"{name} must be a non-empty sequence of layer widths, got {hidden!r}"
        )
    return [check_positive_int(width, f"{name} entries") for width in hidden]


def library_size_of(adata: AnnData, X, library_size: float | None, what: str) -> float:
    """The library size by the rule every model shares, checked on every cell of ``X``."""
    check_finite_nonnegative(X, what)
    size = resolve_library_size(adata, X, library_size)
    check_library_normalized(X, size, what)
    return size


# ----------------------------------------------------------------------------- the shared class


class _LabelledStage(WGANGPStage):
    """A stage whose training cells carry label codes (``labels``, one per row of ``data``)."""

    labels: Tensor


class _GANBaseline(Simulator):
    """Base class of the GAN baselines (not public; see ScGAN, CscGAN and CWGAN).

    Subclasses implement :meth:`_build_module`, :meth:`_new_stage` and :meth:`_generate_block`.
    """

    #: One line naming the model for ``repr``.
    _description: ClassVar[str] = ""
    #: Whether the model is conditioned on cell labels (then ``labels_key`` is required).
    _conditional: ClassVar[bool] = False

    # ------------------------------------------------------------------------- setup
    @classmethod
    def setup_anndata(
        cls,
        adata: AnnData,
        labels_key: str | None = None,
        layer: str | None = None,
        library_size: float | None = None,
    ) -> None:
        """Validate ``adata`` and record where the cells (and labels) live.

        Parameters
        ----------
        adata
            Cells x genes, library-size normalised (every cell sums to the library size), as
            written by :func:`groundgan.pp.preprocess`.
        labels_key
            Column of ``adata.obs`` with cell labels (clusters from :func:`groundgan.pp.cluster`,
            cell types, ...): required by the conditional models, refused by :class:`ScGAN`.
        layer
            Layer holding the normalised values instead of ``X``.
        library_size
            Per-cell total; by default ``adata.uns["groundgan_preprocess"]["library_size"]``,
            else the cells' median total. Every cell must sum to it.

        Writes ``adata.uns["groundgan_setup_<model name>"]``; nothing when a check fails.
        """
        if not isinstance(adata, AnnData):
            raise InvalidInputError(f"adata must be an AnnData, got {type(adata).__name__}")
        if adata.n_obs < MIN_CELLS or adata.n_vars < 1:
            raise InvalidInputError(
                f"adata needs at least {MIN_CELLS} cells and 1 gene, got {adata.n_obs} x {adata.n_vars}"
            )
        check_unique(list(map(str, adata.var_names)), "var_names")
        what = "adata.X" if layer is None else f"adata.layers[{layer!r}]"
        X = matrix_of(adata, layer)
        size = library_size_of(adata, X, library_size, what)
        cls._check_labels_key(labels_key)
        if labels_key is not None:
            _check_labels(adata, labels_key)
        adata.uns[cls.setup_key()] = setup_record(layer, labels_key, library_size=size)

    @classmethod
    def _check_labels_key(cls, labels_key: str | None) -> None:
        if cls._conditional and labels_key is None:
            raise InvalidInputError(
                f"{cls.__name__} is conditional: set it up with labels_key=<obs column of cell "
                "labels>, e.g. the clusters of gg.pp.cluster (labels_key='cluster')"
            )
        if not cls._conditional and labels_key is not None:
            raise InvalidInputError(
                f"{cls.__name__} is unconditional and takes no labels_key; use CscGAN or CWGAN "
                "for a model conditioned on cell labels"
            )

    # ------------------------------------------------------------------------- init
    def __init__(
        self,
        adata: AnnData,
        *,
        latent_dim: int = 128,
        generator_hidden: Sequence[int] = (256, 512, 1024),
        critic_hidden: Sequence[int] = (1024, 512, 256),
        sample_block_size: int = 1024,
        seed: int = 0,
        **model_params: Any,
    ):
        if not isinstance(adata, AnnData):
            raise InvalidInputError(f"adata must be an AnnData, got {type(adata).__name__}")
        if not self.is_set_up(adata):
            raise InvalidInputError(
                f"adata was not set up for {type(self).__name__}: call "
                f"gg.baselines.{type(self).__name__}.setup_anndata(adata) first"
            )
        record = dict(adata.uns[self.setup_key()])
        self.labels_key: str | None = record.get("labels_key")
        self.layer: str | None = record.get("layer")
        if self.labels_key is None:
            names, sizes = [ALL_CELLS], [int(adata.n_obs)]
        else:
            _check_labels(adata, self.labels_key)
            counts = adata.obs[self.labels_key].astype(str).value_counts()
            order = _label_order(adata.obs[self.labels_key])
            names = [name for name in order if counts.get(name, 0) > 0]
            sizes = [int(counts[name]) for name in names]
        init_params = {
            "latent_dim": check_positive_int(latent_dim, "latent_dim"),
            "generator_hidden": check_hidden(generator_hidden, "generator_hidden"),
            "critic_hidden": check_hidden(critic_hidden, "critic_hidden"),
            "sample_block_size": check_positive_int(sample_block_size, "sample_block_size"),
            "seed": check_seed(seed),
            **self._check_model_params(model_params),
        }
        var_names = list(map(str, adata.var_names))
        self._build(var_names, float(record["library_size"]), names, sizes, init_params)
        self.adata: AnnData | None = adata

    def _build(
        self,
        var_names: list[str],
        library_size: float,
        label_names: list[str],
        label_sizes: list[int],
        init_params: dict[str, Any],
    ) -> None:
        """Everything but the data: shared by :meth:`__init__` and :meth:`load`."""
        self.var_names = pd.Index(var_names)
        self.library_size = library_size
        self.labels_: list[str] = list(label_names)
        self.label_sizes_: list[int] = [int(n) for n in label_sizes]
        self.init_params_ = dict(init_params)
        self.sample_block_size: int = int(init_params["sample_block_size"])
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(init_params["seed"])
            self.module = self._build_module()
        #: the state of the training run: steps, histories, the stage, the random stream
        self._runner = TrainingRunner(self.module, (self._stage_name,))
        self.train_seed_: int | None = None

    # what subclasses define ------------------------------------------------------------------
    def _check_model_params(self, params: dict[str, Any]) -> dict[str, Any]:
        """Validated model-specific constructor arguments (none by default)."""
        if params:
            raise TypeError(
                f"{type(self).__name__}() got unexpected keyword arguments: {', '.join(params)}"
            )
        return {}

    def _build_module(self) -> nn.Module:
        """The torch module holding generator, critic and LSN."""
        raise NotImplementedError

    def _new_stage(
        self,
        data: Tensor,
        labels: Tensor,
        settings: StageSettings,
        rng: torch.Generator,
        performance: PerformanceOptions,
    ) -> WGANGPStage:
        """The WGAN-GP stage that trains :attr:`module` on ``data`` (and its label codes)."""
        raise NotImplementedError

    def _generate_block(self, labels: Tensor, rng: torch.Generator) -> Tensor:
        """One block of ``sample_block_size`` cells (LSN applied) of the given label codes."""
        raise NotImplementedError

    # ------------------------------------------------------------------------- description
    @property
    def is_conditional(self) -> bool:
        return self.labels_key is not None

    @property
    def is_trained_(self) -> bool:
        return self.steps_ > 0

    @property
    def _stage_name(self) -> str:
        """The name of the model's one training stage (in its history and progress bar)."""
        return type(self).__name__

    @property
    def steps_(self) -> int:
        """Training steps so far."""
        return self._runner.steps[self._stage_name]

    @steps_.setter
    def steps_(self, steps: int) -> None:
        self._runner.steps[self._stage_name] = int(steps)

    @property
    def history_(self) -> pd.DataFrame:
        """Training losses, one row per ``log_every`` steps (their mean)."""
        return pd.DataFrame(self._runner.rows)

    @property
    def validation_history_(self) -> pd.DataFrame:
        """One row per validation (``validation_adata`` of :meth:`train`): ``stage``,
        ``step``, ``euclidean`` and ``rf_auroc``. Empty without validation."""
        return validation_frame(self._runner.validation_rows)

    @property
    def _stage(self) -> WGANGPStage | None:
        return self._runner.stages.get(self._stage_name)

    @property
    def device(self) -> torch.device:
        return next(self.module.parameters()).device

    @property
    def n_genes(self) -> int:
        return len(self.var_names)

    def _parameter_counts(self) -> dict[str, int]:
        return {
            name: sum(p.numel() for p in part.parameters())
            for name, part in (("generator", self._generator), ("critic", self._critic))
        }

    @property
    def _generator(self) -> nn.Module:
        return self.module.generator

    @property
    def _critic(self) -> nn.Module:
        return self.module.critic

    def _repr_lines(self) -> list[str]:
        p = self.init_params_
        params = self.n_parameters()
        lines = [
            f"{type(self).__name__}: {self._description}",
            f"  genes: {self.n_genes}; library size {self.library_size:g}",
            f"  generator: {p['latent_dim']} -> {p['generator_hidden']} -> {self.n_genes}, LSN; "
            f"critic: {p['critic_hidden']}",
            "  parameters: " + ", ".join(f"{k} {v:,}" for k, v in params.items()),
        ]
        if self.is_conditional:
            lines.append(f"  conditional on obs[{self.labels_key!r}]: {len(self.labels_)} labels")
        trained = f"{self.steps_:,} steps" if self.is_trained_ else "no (call model.train())"
        lines.append(f"  trained: {trained}")
        return lines

    # ------------------------------------------------------------------------- training
    def train(
        self,
        max_steps: int = 200_000,
        batch_size: int = 128,
        n_critic: int = 5,
        gp_lambda: float = 10.0,
        lr: float = 1e-4,
        lr_final: float = 1e-5,
        weight_decay: float = 0.01,
        device: str | torch.device = "auto",
        seed: int = 0,
        progress_bar: bool = True,
        log_every: int = 100,
        *,
        precision: str = "fp32",
        cuda_graphs: bool = False,
        checkpoint_dir: str | Path | None = None,
        checkpoint_every: int = 10_000,
        keep_checkpoints: int = 3,
        validation_adata: AnnData | None = None,
        validate_every: int = 10_000,
    ) -> None:
        """Train the WGAN-GP (defaults: the paper's stage-1 recipe, as for scGAN).

        ``max_steps`` is a total: a repeated call trains up to it, never from zero again. A step
        is one generator update after ``n_critic`` critic updates. Generator and critic learning
        rates decay exponentially from ``lr`` to ``lr_final`` over ``max_steps``; AdamW with
        AMSGrad and betas (0.5, 0.9).

        Training runs through the same runner as :meth:`groundgan.GroundGAN.train`, with the
        same checkpoints, resume, Ctrl-C behaviour, validation and speed options: a first
        Ctrl-C finishes the step in progress, writes a checkpoint when there is a
        ``checkpoint_dir`` and raises :class:`~groundgan.TrainingInterrupted`; training a model
        with the same ``checkpoint_dir`` again (in this process or a new one) resumes from its
        newest valid checkpoint, bit for bit as if it had not stopped.

        Parameters
        ----------
        max_steps
            Total training steps (paper: 200,000).
        batch_size
            Cells per batch (paper: 128). A batch larger than the training set shrinks to it
            (with a warning).
        n_critic
            Critic updates per generator update (paper: 5).
        gp_lambda
            Weight of the gradient penalty (paper: 10).
        lr
            Initial learning rate of generator and critic (paper: 1e-4).
        lr_final
            Learning rate at ``max_steps``, reached by exponential decay (paper: 1e-5).
        weight_decay
            AdamW weight decay of generator and critic.
        device
            ``"auto"`` (CUDA when present), ``"cpu"``, ``"cuda"``, ...
        seed
            Seed of minibatches, noise and interpolation: same seed, same device, same weights.
        progress_bar
            Show a tqdm progress bar.
        log_every
            Losses are averaged over this many steps into the ``history_`` table.
        precision
            ``"fp32"``, ``"fp32-strict"`` (no TF32 on CUDA) or ``"bf16"``, as in
            :meth:`groundgan.GroundGAN.train`.
        cuda_graphs
            Capture each training step in a CUDA graph and replay it (CUDA only; elsewhere the
            step runs eagerly, with a warning), as in :meth:`groundgan.GroundGAN.train`.
        checkpoint_dir
            Write checkpoints into this directory; a directory holding checkpoints of this
            model is resumed from.
        checkpoint_every
            Steps between checkpoints.
        keep_checkpoints
            How many of the newest checkpoints to keep.
        validation_adata
            Held-out cells (the model's genes) compared every ``validate_every`` steps with as
            many simulated cells (Euclidean centroid distance, a small RF AUROC) into
            :attr:`validation_history_`; with ``checkpoint_dir`` the best model so far is kept
            there as ``best/`` (a model directory :meth:`load` reads).
        validate_every
            Steps between two validations.

        Raises
        ------
        ValueError
            Naming the problem: non-positive steps, batch size or intervals, an invalid seed,
            precision or device, validation cells without the model's genes, a checkpoint
            directory of another model. :class:`~groundgan.model.CheckpointLockedError` when
            another process trains into ``checkpoint_dir``.
        """
        if self.adata is None:
            raise InvalidInputError(
                "no training data: this model was loaded without adata; pass adata to load()"
            )
        max_steps = check_positive_int(max_steps, "max_steps")
        log_every = check_positive_int(log_every, "log_every")
        seed = check_seed(seed)
        performance = performance_options(precision, cuda_graphs)
        data, labels = self._training_tensors()
        settings = StageSettings(
            max_steps=max_steps,
            batch_size=batch_size_for(batch_size, data.shape[0]),
            n_critic=check_positive_int(n_critic, "n_critic"),
            gp_lambda=float(gp_lambda),
            lr_generator=float(lr),
            lr_generator_final=float(lr_final),
            lr_critic=float(lr),
            lr_critic_final=float(lr_final),
            weight_decay=float(weight_decay),
        )
        # every argument is checked before the checkpoint directory is created or locked
        validation = None
        if validation_adata is not None:
            validate_every = check_positive_int(validate_every, "validate_every")
            validation = Validation(
                list(self.var_names), self.layer, validation_adata, self._simulate, seed
            )
        if checkpoint_dir:
            checkpoint_every = check_positive_int(checkpoint_every, "checkpoint_every")
        target = resolve_device(device)
        self.module.to(target)
        data, labels = data.to(target), labels.to(target)
        runner, name = self._runner, self._stage_name
        runner.generator(data.device, seed)
        self.train_seed_ = seed
        with runner.checkpointing(
            checkpoint_dir, keep_checkpoints, self._fingerprint(), self._checkpoint_extra
        ) as checkpoints:
            hooks = []
            if validation is not None:  # before the checkpoint hook: a checkpoint holds its row
                validate = runner.validation_hook(
                    name, validation.evaluate, checkpoints, partial(self.save, overwrite=True)
                )
                hooks.append((validate_every, validate))
            if checkpoints is not None:
                hooks.append((checkpoint_every, checkpoints.hook()))
            stage = runner.stage(
                name,
                settings,
                performance,
                data,
                self._stage_builder(labels),
                labels=labels if self.is_conditional else None,
            )
            runner.train_stage(
                name,
                stage,
                max_steps,
                hooks=hooks,
                log_every=log_every,
                progress_bar=progress_bar,
            )

    def _stage_builder(self, labels: Tensor):
        """How the runner builds this model's stage on cells with these label codes."""

        def build(data, settings, rng, performance) -> WGANGPStage:
            return self._new_stage(data, labels, settings, rng, performance)

        return build

    def _fingerprint(self) -> dict[str, Any]:
        """What a checkpoint must match to be resumed into this model."""
        return checkpoint_fingerprint(
            self, list(self.var_names), labels=[self.labels_, self.label_sizes_]
        )

    def _checkpoint_extra(self) -> dict[str, Any]:
        return {"train_seed": self.train_seed_}

    def _simulate(self, n_cells: int, seed: int) -> np.ndarray:
        """``n_cells`` cells split over the labels by the training ratios (validation)."""
        per_label = cells_per_label(
            n_cells, None, self.labels_, self.label_sizes_, self.labels_key, ""
        )
        codes = np.repeat(np.arange(len(self.labels_)), per_label)
        return self._generate(codes, seed)

    def _training_tensors(self) -> tuple[Tensor, Tensor]:
        """Cells (float32, dense) and their label codes (indices into :attr:`labels_`)."""
        adata = self.adata
        check_same_genes(adata, list(self.var_names))
        X = matrix_of(adata, self.layer)
        what = "training data" if self.layer is None else f"adata.layers[{self.layer!r}]"
        check_library_normalized(X, self.library_size, what)
        check_enough_cells(adata.n_obs)
        dense = np.ascontiguousarray(to_dense(X), dtype=np.float32)
        codes = np.zeros(adata.n_obs, dtype=np.int64)
        if self.labels_key is not None:
            _check_labels(adata, self.labels_key)
            values = adata.obs[self.labels_key].astype(str).to_numpy()
            unknown = sorted(set(values) - set(self.labels_))
            if unknown:
                raise InvalidInputError(
                    f"adata.obs[{self.labels_key!r}] has labels the model does not know: "
                    f"{format_names(unknown)} (model labels: {format_names(self.labels_)})"
                )
            position = {name: i for i, name in enumerate(self.labels_)}
            codes = np.array([position[v] for v in values], dtype=np.int64)
        return torch.from_numpy(dense), torch.from_numpy(codes)

    # ------------------------------------------------------------------------- sampling
    def sample(
        self,
        n_cells: int | None = None,
        seed: int | None = 0,
        labels: Mapping[str, int] | None = None,
    ) -> AnnData:
        """Simulate cells.

        Cells are generated in blocks of ``sample_block_size`` from one seeded generator
        (BatchNorm normalises with batch statistics, as in training and in the paper), so the
        cells of a seed do not depend on how many are asked for.

        Parameters
        ----------
        n_cells
            Number of cells; ``None`` means 1000, or the total of ``labels``.
        seed
            Same seed (on the same device) -> identical cells. ``None`` draws one (recorded).
        labels
            Conditional models only: cells per label, e.g. ``{"CD19+ B": 100}`` (honoured
            exactly; labels left out get no cells). ``None``: ``n_cells`` split by the training
            ratios (largest-remainder rounding).

        Returns
        -------
        AnnData
            The simulated cells, on the training genes:

            - ``X``: float32 values >= 0, each cell summing to the library size;
            - ``obs["simulated"]`` (``True``) and, for conditional models,
              ``obs[labels_key]`` (cells grouped by label, in label order);
            - ``uns["groundgan"]``: model, version, seed, library size, block size and
              training steps.
        """
        if not self.is_trained_:
            raise NotTrainedError(
                f"{type(self).__name__} is not trained: call model.train() before sample()"
            )
        per_label = cells_per_label(
            n_cells,
            labels,
            self.labels_,
            self.label_sizes_,
            self.labels_key,
            f"{type(self).__name__} is unconditional; use CscGAN or CWGAN set up with "
            "labels_key=... for conditional sampling",
        )
        seed = resolve_seed(seed)
        codes = np.repeat(np.arange(len(self.labels_)), per_label)
        X = self._generate(codes, seed)
        return self._to_anndata(X, codes, seed)

    def _generate(self, codes: np.ndarray, seed: int) -> np.ndarray:
        """Cells of the given label codes, block after block from one seeded generator."""
        block, device = self.sample_block_size, self.device
        rng = torch.Generator(device=device).manual_seed(seed)
        was_training = self.module.training
        self.module.eval()
        blocks = []
        try:
            with torch.no_grad():
                for start in range(0, len(codes), block):
                    labels = torch.as_tensor(codes[start : start + block], device=device)
                    cells = self._generate_block(labels, rng)
                    blocks.append(cells[: len(labels)].float().cpu().numpy())
        finally:
            self.module.train(was_training)
        return np.concatenate(blocks, axis=0)

    def _to_anndata(self, X: np.ndarray, codes: np.ndarray, seed: int) -> AnnData:
        labels = None
        if self.is_conditional:
            labels = pd.Categorical.from_codes(codes, categories=self.labels_)
        return simulated_anndata(
            self, X, labels, seed, sample_block_size=self.sample_block_size, steps=self.steps_
        )

    # ------------------------------------------------------------------------- persistence
    def save(self, dir_path: str | Path, overwrite: bool = False) -> None:
        """Write the model to a directory.

        ``model.pt`` (state dict, loaded with ``weights_only=True``), ``model.json`` (settings,
        version, steps), ``var_names.csv``, ``labels.csv`` (conditional models: each label and
        its number of training cells) and ``history.csv`` (training losses, when trained). No
        pickles.

        Parameters
        ----------
        dir_path
            The directory; created if needed. It must be empty or absent unless ``overwrite``.
        overwrite
            Also write into a directory that is not empty (its model files are replaced).
        """
        path = Path(dir_path)
        check_save_dir(path, overwrite)
        files = {
            WEIGHTS_FILE: torch_bytes(
                {k: v.detach().cpu() for k, v in self.module.state_dict().items()}
            ),
            META_FILE: json.dumps(self._metadata(), indent=2).encode(),
            GENES_FILE: pd.DataFrame({"gene": list(self.var_names)}).to_csv(index=False).encode(),
        }
        if self.is_conditional:
            table = pd.DataFrame({"label": self.labels_, "n_cells": self.label_sizes_})
            files[LABELS_FILE] = table.to_csv(index=False).encode()
        if len(self.history_):
            files[HISTORY_FILE] = self.history_.to_csv(index=False).encode()
        write_model_files(path, files, overwrite)
        for name in (LABELS_FILE, HISTORY_FILE):
            if name not in files:
                (path / name).unlink(missing_ok=True)

    def _metadata(self) -> dict[str, Any]:
        return self._saved_record(
            self.layer,
            labels_key=self.labels_key,
            n_labels=len(self.labels_),
            n_cells_train=int(sum(self.label_sizes_)),
            steps=self.steps_,
            train_seed=self.train_seed_,
        )

    @classmethod
    def load(cls, dir_path: str | Path, adata: AnnData | None = None, device: str = "cpu"):
        """Restore a model written by :meth:`save`; it samples identically.

        Parameters
        ----------
        dir_path
            Directory written by :meth:`save`.
        adata
            Optional data to attach (for further training); its genes must be the model's, in
            the same order. It is set up for this model when it is not yet.
        device
            Where to put the weights.
        """
        path = Path(dir_path)
        meta, var_names, label_names, label_sizes = cls._read_dir(path)
        if adata is not None:
            check_same_genes(adata, var_names)
        model = cls.__new__(cls)
        model.labels_key = meta["labels_key"]
        model.layer = meta["layer"]
        model._build(
            var_names, float(meta["library_size"]), label_names, label_sizes, meta["init_params"]
        )
        load_module_state(model.module, path / WEIGHTS_FILE, META_FILE)
        verify_model_files(path)  # after the weights: a planted pickle is refused as such
        model.module.to(device)
        model.module.eval()
        model.steps_ = int(meta["steps"])
        model.train_seed_ = meta.get("train_seed")
        if (path / HISTORY_FILE).is_file():
            model._runner.rows = pd.read_csv(path / HISTORY_FILE).to_dict("records")
        model.adata = adata
        if adata is not None and not cls.is_set_up(adata):
            cls.setup_anndata(
                adata,
                labels_key=model.labels_key,
                layer=model.layer,
                library_size=model.library_size,
            )
        return model

    @classmethod
    def _read_dir(cls, path: Path) -> tuple[dict, list[str], list[str], list[int]]:
        """Metadata, genes, labels and their training sizes of a saved model."""
        for name in (META_FILE, WEIGHTS_FILE, GENES_FILE):
            if not (path / name).is_file():
                raise InvalidInputError(f"{str(path)!r} holds no saved model ({name} missing)")
        try:
            meta = json.loads((path / META_FILE).read_text(encoding="utf-8"))
            var_names = pd.read_csv(path / GENES_FILE, dtype=str)["gene"].tolist()
            if meta.get("labels_key") is None:
                label_names, label_sizes = [ALL_CELLS], [int(meta["n_cells_train"])]
            else:
                table = pd.read_csv(path / LABELS_FILE, dtype={"label": str})
                label_names, label_sizes = table["label"].tolist(), table["n_cells"].tolist()
        except (ValueError, KeyError, OSError, UnicodeDecodeError) as err:
            raise InvalidInputError(
                f"{str(path)!r} holds an unreadable model ({type(err).__name__}: {err})"
            ) from err
        if meta.get("model") != cls.__name__:
            raise InvalidInputError(
                f"{str(path)!r} holds a {meta.get('model')} model, not {cls.__name__}"
            )
        return meta, var_names, label_names, label_sizes


# ----------------------------------------------------------------------------- scGAN


class ScGANModule(nn.Module):
    """scGAN's networks, named as in :class:`~groundgan.nn.GroundGANModule` so that
    :class:`~groundgan.train.ControllerStage` trains them (and GroundGAN's causal controller
    could start from them: the state-dict keys of ``controller`` are the same)."""

    def __init__(
        self,
        n_genes: int,
        latent_dim: int,
        generator_hidden: Sequence[int],
        critic_hidden: Sequence[int],
        library_size: float,
    ):
        super().__init__()
        self.controller = CausalController(latent_dim, generator_hidden, n_genes)
        self.controller_critic = Critic(n_genes, critic_hidden)
        self.lsn = LibrarySizeNormalization(library_size)

    @property
    def generator(self) -> CausalController:
        return self.controller

    @property
    def critic(self) -> Critic:
        return self.controller_critic

    def generate_stage1(self, noise: Tensor) -> Tensor:
        """Library-size-normalised cells from noise (the name :class:`ControllerStage` calls)."""
        return self.lsn(self.controller(noise))


class ScGANStage(ControllerStage):
    """GroundGAN's stage 1 under scGAN's name (in the progress bar, history and errors)."""

    name = "ScGAN"


class ScGAN(_GANBaseline):
    """scGAN (Marouf et al. 2020): a WGAN-GP with an LSN output layer.

    Exactly GroundGAN's causal controller trained alone (its stage 1): generator ``noise ->
    hidden (Linear, BatchNorm, ReLU) -> n_genes`` with ReLU output and LSN; critic ``n_genes ->
    hidden (Linear, ReLU) -> 1``. Trained by :class:`~groundgan.train.ControllerStage`.

    Parameters
    ----------
    adata
        Library-size-normalised cells registered with :meth:`setup_anndata`.
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
    >>> gg.baselines.ScGAN.setup_anndata(train)
    >>> model = gg.baselines.ScGAN(train)
    >>> model.train()                       # paper: 200,000 steps of 128 cells
    >>> sim = model.sample(n_cells=1000, seed=0)
    """

    _description = "WGAN-GP with library-size normalisation (GroundGAN's causal controller alone)"

    def _build_module(self) -> ScGANModule:
        p = self.init_params_
        return ScGANModule(
            self.n_genes,
            p["latent_dim"],
            p["generator_hidden"],
            p["critic_hidden"],
            self.library_size,
        )

    def _new_stage(self, data, labels, settings, rng, performance) -> WGANGPStage:
        return ScGANStage(self.module, data, settings, rng, performance=performance)

    def _generate_block(self, labels: Tensor, rng: torch.Generator) -> Tensor:
        noise = torch.randn(
            self.sample_block_size,
            self.init_params_["latent_dim"],
            generator=rng,
            device=labels.device,
        )
        return self.module.generate_stage1(noise)
