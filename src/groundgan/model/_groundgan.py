"""The GroundGAN model class: scvi-tools-style API over the torch modules and training stages."""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from dataclasses import replace
from datetime import timedelta
from functools import partial
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd
import torch
from anndata import AnnData
from tqdm.auto import tqdm

from .._devices import resolve_device
from .._files import check_same_genes
from .._seeds import check_seed, resolve_seed
from .._validation import (
    InvalidInputError,
    check_library_normalized,
    check_positive_int,
    matrix_of,
    to_dense,
)
from .._version import __version__
from ..nn import GroundGANModule, paper_depth_width
from ..train import (
    GROUNDGAN_STAGES,
    StageSettings,
    TrainingRunner,
    WGANGPStage,
    performance_options,
)
from . import _budget, _io, _monitor, _perturb, _recipes, _sampling
from ._base import Simulator, batch_size_for, check_enough_cells
from ._setup import LEGACY_SETUP_KEY, GRNLayout, read_setup, record_setup, validate_setup

STAGES = ("stage1", "stage2")
#: ``callback(model, stage, step)``, see :meth:`GroundGAN.train`.
TrainingCallback = Callable[["GroundGAN", str, int], None]


class GroundGAN(Simulator):
    """GRN-guided causal WGAN-GP simulator of single-cell RNA-seq (GRouNdGAN).

    A causal controller (a WGAN-GP generator trained on all genes in stage 1) produces TF
    expression; one independent MLP per target gene turns its regulators' expression and its own
    noise into the target's expression (stage 2, with a critic, a labeler and an anti-labeler);
    an LSN layer scales each cell to the library size. The imposed GRN is the causal ground truth
    of the simulated cells.

    Parameters
    ----------
    adata
        Library-size-normalised cells registered with :meth:`setup_anndata`.
    latent_dim
        Length of the causal controller's Gaussian noise.
    controller_hidden
        Hidden layer sizes of the causal controller (the generator of stage 1).
    critic_hidden
        Hidden layer sizes of both critics (the causal controller's in stage 1 and the full
        model's in stage 2).
    labeler_hidden
        Hidden layer sizes of the labeler and of the anti-labeler.
    depth
        Hidden layers of each target generator. ``"auto"``: the paper's rule, 3 up to 5,000
        GRN edges, 2 above.
    width
        Width multiplier of the target generators: a gene with ``r`` regulators has hidden
        layers of ``width * (r + 1)`` units, the ``+ 1`` being its noise. ``"auto"``: the
        paper's rule, 2 up to 5,000 GRN edges, 1 above.
    sample_block_size
        Cells are generated in blocks of this size (BatchNorm uses batch statistics), so a cell
        never depends on how many are asked for. Saved with the model.
    calibrate_targets
        Before stage 2, set each target generator's output layer so that its output starts
        with the per-gene mean and spread of the causal controller's own (pre-LSN) output for
        that gene. Not in the paper (which starts from He-initialised output layers); without
        it the targets' total starts at an arbitrary scale and LSN distorts the TFs until the
        generators have learned the scale. ``False`` reproduces the paper's initialisation.
    seed
        Seed of the weight initialisation.

    Attributes
    ----------
    history_ : pandas.DataFrame
        Training losses logged by :meth:`train`, one row per ``log_every`` steps (their mean):
        ``stage`` (``"stage1"`` or ``"stage2"``), ``step`` (the stage's step count at the end
        of the window), ``critic_loss``, ``wasserstein``, ``gradient_penalty``,
        ``generator_loss`` and, in stage 2, ``labeler_loss`` and ``antilabeler_loss``.
        Repeated and resumed calls append to it. Empty before training; kept in training
        checkpoints, not in the directory :meth:`save` writes.
    steps_ : dict of str to int
        Steps trained so far per stage, ``{"stage1": ..., "stage2": ...}``; the
        ``max_steps_stage*`` of :meth:`train` are totals compared with these counts. Saved
        with the model.
    validation_history_ : pandas.DataFrame
        One row per validation during stage 2 (``validation_adata`` and ``validate_every`` of
        :meth:`train`): ``stage``, ``step``, ``euclidean`` (distance between the centroids of
        simulated and validation cells) and ``rf_auroc`` (a random forest telling them
        apart). Empty without validation.
    is_trained_ : bool
        True once stage 2 has trained (``steps_["stage2"] > 0``). :meth:`sample`,
        :meth:`perturb` and :meth:`replay_state` refuse a model that is not, unless passed
        ``allow_untrained=True``.
    train_record_ : dict
        How the last :meth:`train` call was set up: ``"recipe"`` (the recipe's name),
        ``"hyperparameters"`` (every value used, from the recipe or given explicitly),
        ``"max_time"`` (the time budget in seconds, or ``None``), ``"steps_per_second"`` and
        ``"planned_steps"`` (per stage: the speed measured before it started and the step
        total fitted to the budget; empty without ``max_time``). Passing the planned totals as
        ``max_steps_stage*`` repeats a budgeted run exactly. Empty before training; saved with
        the model.

    Examples
    --------
    >>> gg.GroundGAN.setup_anndata(adata, grn=grn)
    >>> model = gg.GroundGAN(adata)
    >>> model.train()
    >>> sim = model.sample(1000, seed=0)
    """

    _description = "GRN-guided causal WGAN-GP (GRouNdGAN)"
    _legacy_setup_keys = (LEGACY_SETUP_KEY,)

    def __init__(
        self,
        adata: AnnData,
        *,
        latent_dim: int = 128,
        controller_hidden: Sequence[int] = (256, 512, 1024),
        critic_hidden: Sequence[int] = (1024, 512, 256),
        labeler_hidden: Sequence[int] = (2000, 2000, 2000),
        depth: int | Literal["auto"] = "auto",
        width: float | Literal["auto"] = "auto",
        sample_block_size: int = 1024,
        calibrate_targets: bool = True,
        seed: int = 0,
    ):
        layout, layer, library_size = read_setup(adata)
        self.adata = adata
        self._layer = layer
        self._build(
            layout,
            library_size,
            dict(
                latent_dim=latent_dim,
                controller_hidden=list(controller_hidden),
                critic_hidden=list(critic_hidden),
                labeler_hidden=list(labeler_hidden),
                depth=depth,
                width=width,
                sample_block_size=sample_block_size,
                calibrate_targets=calibrate_targets,
                seed=seed,
            ),
        )

    def _build(self, layout: GRNLayout, library_size: float, init_params: dict) -> None:
        self.layout = layout
        self.library_size = float(library_size)
        self.init_params_ = init_params
        p = init_params
        self.sample_block_size = check_positive_int(p["sample_block_size"], "sample_block_size")
        self.calibrate_targets = bool(p.get("calibrate_targets", True))
        depth, width = paper_depth_width(len(layout.grn), p["depth"], p["width"])
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(p["seed"])
            self.module = GroundGANModule(
                n_genes=len(layout.var_names),
                tf_index=layout.root_index,
                target_index=layout.target_index,
                regulators=layout.regulators,
                latent_dim=p["latent_dim"],
                controller_hidden=p["controller_hidden"],
                critic_hidden=p["critic_hidden"],
                labeler_hidden=p["labeler_hidden"],
                depth=depth,
                width=width,
                library_size=self.library_size,
            )
        #: the state of the training run: steps, histories, stages, random stream
        self._runner = TrainingRunner(self.module, STAGES)
        #: how the last train() call was set up: recipe, hyperparameters, time budget, speeds
        self.train_record_: dict[str, Any] = {}

    # set-up --------------------------------------------------------------------------------
    @classmethod
    def setup_anndata(
        cls,
        adata: AnnData,
        grn: pd.DataFrame,
        layer: str | None = None,
        library_size: float | None = None,
    ) -> None:
        """Validate cells and GRN and record them in ``adata.uns["groundgan_setup_GroundGAN"]``.

        Parameters
        ----------
        adata
            Cells x genes, library-size normalised (every cell sums to the same library size),
            e.g. the output of :func:`groundgan.grn.subset`. Every gene must be a TF or a
            target of ``grn``.
        grn
            Table with columns ``tf``, ``target`` and optionally ``importance``: a directed
            acyclic graph (no cycles, no self-loops, no duplicate edges). The paper's GRNs are
            bipartite, TF -> target; TFs may also regulate TFs (a cascade): root TFs come from
            the causal controller, every regulated gene (TF or not) from its own generator,
            level by level (see :func:`groundgan.grn.levels`).
        layer
            Layer holding the values instead of ``X``.
        library_size
            Per-cell total; by default what :func:`groundgan.pp.preprocess` recorded
            (``adata.uns["groundgan_preprocess"]``), else the cells' median total. Every cell
            must sum to it.

        Raises
        ------
        ValueError
            Naming the problem (missing genes, a cycle, self-loops, duplicate edges,
            genes outside the GRN, negative/NaN/infinite values, log-transformed or
            un-normalised data). On error ``adata`` is left exactly as it was.
        """
        layout, library_size = validate_setup(adata, grn, layer, library_size)
        record_setup(adata, layout, layer, library_size)

    # description ---------------------------------------------------------------------------
    @property
    def device(self) -> torch.device:
        return next(self.module.parameters()).device

    @property
    def is_trained_(self) -> bool:
        """True once stage 2 has trained (the model then samples from the full GRouNdGAN)."""
        return self.steps_["stage2"] > 0

    @property
    def steps_(self) -> dict[str, int]:
        """Steps trained so far per stage (see the class docstring)."""
        return self._runner.steps

    @steps_.setter
    def steps_(self, steps: dict[str, int]) -> None:
        self._runner.steps = {stage: int(steps[stage]) for stage in STAGES}

    @property
    def history_(self) -> pd.DataFrame:
        """Training losses, one row per logging window (see the class docstring)."""
        return pd.DataFrame(self._runner.rows)

    @property
    def validation_history_(self) -> pd.DataFrame:
        """One row per validation during stage 2 (see the class docstring)."""
        return _monitor.validation_frame(self._runner.validation_rows)

    @property
    def grn(self) -> pd.DataFrame:
        """The imposed GRN (``tf``, ``target``, ``importance``)."""
        return self.layout.grn.copy()

    def n_parameters(self) -> dict[str, int]:
        """Number of parameters per network.

        Returns
        -------
        dict of str to int
            ``causal_controller``, ``target_generators``, ``critic``, ``controller_critic``,
            ``labeler`` and ``antilabeler``.
        """
        return super().n_parameters()

    def _parameter_counts(self) -> dict[str, int]:
        m = self.module
        parts = {
            "causal_controller": m.controller,
            "target_generators": m.target_generators,
            "critic": m.critic,
            "controller_critic": m.controller_critic,
            "labeler": m.labeler,
            "antilabeler": m.antilabeler,
        }
        return {k: sum(p.numel() for p in v.parameters()) for k, v in parts.items()}

    def _roles_line(self) -> str:
        layout = self.layout
        n_regulated_tfs = len(layout.tfs) - len(layout.roots)
        leaves = len(layout.targets) - n_regulated_tfs
        if not n_regulated_tfs:
            return f"{len(layout.tfs)} TFs + {leaves} targets"
        return f"{len(layout.roots)} root TFs + {n_regulated_tfs} regulated TFs + {leaves} targets"

    def _repr_lines(self) -> list[str]:
        m, tg = self.module, self.module.target_generators
        params = self.n_parameters()
        lines = [
            f"GroundGAN (groundgan {__version__})",
            f"  genes: {m.n_genes} = {self._roles_line()}; "
            f"GRN edges: {len(self.layout.grn):,}; library size {self.library_size:g}",
            f"  causal controller: {self.init_params_['latent_dim']} -> "
            f"{self.init_params_['controller_hidden']} -> {m.n_genes}",
            f"  target generators: depth {tg.depth}, width {tg.width:g} "
            f"(block-diagonal, {len(tg.groups)} in-degree group"
            f"{'' if len(tg.groups) == 1 else 's'}"
            f"{'' if tg.n_levels == 1 else f', {tg.n_levels} levels'})",
            f"  critic: {self.init_params_['critic_hidden']}; labelers: "
            f"{self.init_params_['labeler_hidden']}",
            "  parameters: " + ", ".join(f"{k} {v:,}" for k, v in params.items()),
            f"  trained steps: stage 1 {self.steps_['stage1']:,}, stage 2 {self.steps_['stage2']:,}"
            f"; device {self.device}",
        ]
        return lines

    # training ------------------------------------------------------------------------------
    def train(
        self,
        max_steps_stage1: int | None = None,
        max_steps_stage2: int | None = None,
        batch_size_stage1: int | None = None,
        batch_size_stage2: int | None = None,
        n_critic: int | None = None,
        gp_lambda: float | None = None,
        lr_stage1: float | None = None,
        lr_stage1_final: float | None = None,
        lr_generator_stage2: float | None = None,
        lr_generator_stage2_final: float | None = None,
        lr_critic_stage2: float | None = None,
        lr_critic_stage2_final: float | None = None,
        lr_labeler: float | None = None,
        weight_decay: float | None = None,
        device: str | torch.device = "auto",
        precision: str = "fp32",
        cuda_graphs: bool = False,
        seed: int = 0,
        checkpoint_dir: str | Path | None = None,
        checkpoint_every: int = 10_000,
        keep_checkpoints: int = 3,
        progress_bar: bool = True,
        stages: Sequence[int] = (1, 2),
        log_every: int = 100,
        validation_adata: AnnData | None = None,
        validate_every: int = 10_000,
        callbacks: Sequence[tuple[int, TrainingCallback]] = (),
        *,
        recipe: str = "paper",
        max_time: float | timedelta | None = None,
        ema_decay: float | None = None,
        warm_start_critic: bool | None = None,
        stage1_time_share: float | None = None,
    ) -> None:
        """Train stage 1 (causal controller) and then stage 2 (GRouNdGAN).

        Hyperparameters left at ``None`` come from ``recipe``: ``"paper"`` (the default) is the
        paper's schedule, ``"fast"`` groundgan's recipe for short budgets (see
        :doc:`/realism` for the learning curves behind it). Explicit values override the
        recipe's. ``max_time`` trains the best model that fits a time budget.

        ``max_steps_stage*`` are totals: a repeated or resumed call trains up to them, never
        past them and never from zero again. A step is one generator update with its
        ``n_critic`` critic updates. Learning rates decay exponentially from the first to the
        ``_final`` value over the stage's total steps (stage 1: generator and critic alike; the
        stage-2 critic is constant in both recipes, as in the reference implementation).

        Fewer training cells than a batch: the batch shrinks to the number of cells, with a
        warning; fewer than 10 cells are refused. On a CPU, a stage estimated (after its first
        steps) to need more than an hour warns with the estimate and names ``max_time`` and
        ``recipe="fast"``.

        A first Ctrl-C (or a notebook's interrupt) finishes the step in progress, writes a
        checkpoint of it when there is a ``checkpoint_dir``, and raises
        :class:`~groundgan.TrainingInterrupted`; calling ``train`` again (or resuming
        from the checkpoints) continues exactly where it stopped. A second Ctrl-C stops at once.

        Parameters
        ----------
        max_steps_stage1
            Total training steps of stage 1 (paper: 200,000; fast: 2,000).
        max_steps_stage2
            Total training steps of stage 2 (paper: 1,000,000; fast: 3,000).
        batch_size_stage1
            Cells per stage-1 minibatch (both recipes: 128).
        batch_size_stage2
            Cells per stage-2 minibatch (paper: 1,024; fast: 256).
        n_critic
            Critic updates per generator update (both recipes: 5).
        gp_lambda
            Weight of the gradient penalty (both recipes: 10).
        lr_stage1
            Stage 1's learning rate (generator and critic) at its first step (paper: 1e-4;
            fast: 1e-3).
        lr_stage1_final
            Stage 1's learning rate at its last step (paper: 1e-5; fast: 1e-4).
        lr_generator_stage2
            The target generators' learning rate at the first stage-2 step (1e-3).
        lr_generator_stage2_final
            The target generators' learning rate at the last stage-2 step (1e-4).
        lr_critic_stage2
            The stage-2 critic's learning rate at the first stage-2 step (1e-3).
        lr_critic_stage2_final
            The stage-2 critic's learning rate at the last stage-2 step (1e-3: constant, as
            in the reference implementation; 1e-4 follows the paper's text).
        lr_labeler
            Learning rate of the labeler and the anti-labeler (1e-4).
        weight_decay
            AdamW's weight decay (0.01).
        device
            ``"auto"`` (CUDA when present), ``"cpu"``, ``"cuda"``, ...
        precision
            ``"fp32"`` (default): float32, with TF32 matrix multiplications on CUDA (10-bit
            mantissa inputs, float32 accumulation; faster on Ampere and newer GPUs).
            ``"fp32-strict"``: float32 without TF32 (full float32 matmuls on CUDA; the same as
            ``"fp32"`` on a CPU). ``"bf16"``: bfloat16 autocast of the forward passes (losses,
            gradients, weights and optimiser state stay float32), meant for CUDA devices and
            CPUs with bfloat16 matrix instructions (AVX512-BF16, AMX); elsewhere it runs with a
            warning, usually slower than float32.
        cuda_graphs
            Capture each whole training step in a CUDA graph after three eager warm-up steps and
            replay it (opt-in; CUDA only: elsewhere the capture-ready step runs eagerly, with a
            warning). Should capture fail, training goes on eagerly with a warning.
        seed
            Seed of the training randomness (minibatches, noise, interpolation); the same seed
            on the same device gives the same weights.
        checkpoint_dir
            Write checkpoints into this directory; a directory holding checkpoints is resumed
            from.
        checkpoint_every
            Steps between checkpoints.
        keep_checkpoints
            How many of the newest checkpoints to keep.
        progress_bar
            Show one progress bar over both stages (steps still to train, with the estimated
            time left; stage-2 steps take longer than stage-1 steps, so the estimate grows once
            stage 2 starts).
        stages
            Which stages to run: ``(1, 2)``, ``(1,)`` or ``(2,)``.
        log_every
            Losses are averaged over this many steps into :attr:`history_`.
        validation_adata
            Held-out cells (same genes) on which cheap realism figures (Euclidean centroid
            distance, a small RF AUROC) are computed during stage 2 into
            :attr:`validation_history_`; with ``checkpoint_dir`` the best model so far is kept
            there as ``best/``.
        validate_every
            Stage-2 steps between two validations.
        callbacks
            ``(every, callback)`` pairs: ``callback(model, stage, step)`` runs every ``every``
            steps of each stage and after its last step, with ``stage`` ``"stage1"`` or
            ``"stage2"`` and :attr:`steps_` already counting ``step``. The model can be sampled
            there (sampling leaves the training randomness untouched).
        recipe
            ``"paper"`` or ``"fast"``: where the hyperparameters left at ``None`` come from.
        max_time
            Time budget of this call, in seconds or a :class:`datetime.timedelta`. Before each
            stage its speed is measured on a copy of the networks (a few steps), and the step
            total is set to what fits: stage 1 gets ``stage1_time_share`` of the budget, stage 2
            the rest, neither more than the recipe's (or the given) total. A stage still running
            when its time is up stops after the step in progress. The measured speeds and the
            totals are recorded in :attr:`train_record_`; passing those totals instead of
            ``max_time`` repeats the run exactly.
        ema_decay
            Keep an exponential moving average of the generator's weights in each stage (the
            causal controller in stage 1, the target generators in stage 2) with this decay,
            and generate from it (:meth:`sample`, :meth:`perturb`, :meth:`replay_state`); the
            averaged controller becomes the frozen controller of stage 2. ``0`` turns it off.
            Off in both recipes: on the learning curves of :doc:`/realism` it gained nothing
            in a few thousand steps. Not in the paper (Yazıcı et al. 2019).
        warm_start_critic
            Start the stage-2 critic from the trained stage-1 critic (both judge whole cells
            with the same architecture) instead of from a fresh initialisation. Not in the paper.
        stage1_time_share
            With ``max_time``: the share of the budget given to stage 1 (paper: 0.1; fast:
            0.3).

        Raises
        ------
        ValueError
            Naming the problem: an unknown recipe, stage or precision, a non-positive step
            total, batch size or time budget, an ``ema_decay`` outside [0, 1).
        """
        seed = check_seed(seed)
        unknown = set(stages) - {1, 2}
        if unknown or not stages:
            raise InvalidInputError(f"stages must be a subset of (1, 2), got {tuple(stages)}")
        hp = _recipes.get_recipe(recipe).with_overrides(
            dict(
                max_steps_stage1=max_steps_stage1,
                max_steps_stage2=max_steps_stage2,
                batch_size_stage1=batch_size_stage1,
                batch_size_stage2=batch_size_stage2,
                n_critic=n_critic,
                gp_lambda=gp_lambda,
                lr_stage1=lr_stage1,
                lr_stage1_final=lr_stage1_final,
                lr_generator_stage2=lr_generator_stage2,
                lr_generator_stage2_final=lr_generator_stage2_final,
                lr_critic_stage2=lr_critic_stage2,
                lr_critic_stage2_final=lr_critic_stage2_final,
                lr_labeler=lr_labeler,
                weight_decay=weight_decay,
                ema_decay=ema_decay,
                warm_start_critic=warm_start_critic,
                stage1_time_share=stage1_time_share,
            )
        )
        average = _recipes.check_ema_decay(hp.ema_decay) or None  # 0: no average
        budget = _budget.budget_seconds(max_time)
        share = _recipes.check_share(hp.stage1_time_share)
        data = self._training_tensor()
        target_device = resolve_device(device)
        # refuses unknown values
        performance = performance_options(precision, cuda_graphs)
        self.module.to(target_device)
        data = data.to(target_device)
        shared = dict(
            n_critic=hp.n_critic,
            gp_lambda=hp.gp_lambda,
            weight_decay=hp.weight_decay,
            ema_decay=average,
        )
        settings = {
            "stage1": StageSettings(
                max_steps=hp.max_steps_stage1,
                batch_size=batch_size_for(hp.batch_size_stage1, data.shape[0], warn=1 in stages),
                lr_generator=hp.lr_stage1,
                lr_generator_final=hp.lr_stage1_final,
                lr_critic=hp.lr_stage1,
                lr_critic_final=hp.lr_stage1_final,
                **shared,
            ),
            "stage2": StageSettings(
                max_steps=hp.max_steps_stage2,
                batch_size=batch_size_for(hp.batch_size_stage2, data.shape[0], warn=2 in stages),
                lr_generator=hp.lr_generator_stage2,
                lr_generator_final=hp.lr_generator_stage2_final,
                lr_critic=hp.lr_critic_stage2,
                lr_critic_final=hp.lr_critic_stage2_final,
                lr_labeler=hp.lr_labeler,
                **shared,
            ),
        }
        for name in ("stage1", "stage2"):
            check_positive_int(settings[name].max_steps, f"max_steps_{name}")
        # every argument is checked before the checkpoint directory is created or locked
        validation = None
        if validation_adata is not None:
            validate_every = check_positive_int(validate_every, "validate_every")
            validation = _monitor.Validation(
                self.layout.var_names, self._layer, validation_adata, self._simulate, seed
            )
        if checkpoint_dir:
            checkpoint_every = check_positive_int(checkpoint_every, "checkpoint_every")
        user_hooks = self._callback_hooks(callbacks)
        clock = None if budget is None else _budget.TimeBudget(budget, share)
        run_names = tuple(
            name for number, name in ((1, "stage1"), (2, "stage2")) if number in stages
        )
        self.train_record_ = {
            "recipe": recipe,
            "hyperparameters": hp.as_dict(),
            "max_time": budget,
            "steps_per_second": {},
            "planned_steps": {},
        }
        runner = self._runner
        runner.generator(data.device, seed)
        with runner.checkpointing(
            checkpoint_dir, keep_checkpoints, _io.model_fingerprint(self)
        ) as checkpoints:
            hooks = []
            if validation is not None:  # before the checkpoint hook: a checkpoint holds its row
                validate = runner.validation_hook(
                    "stage2", validation.evaluate, checkpoints, partial(self.save, overwrite=True)
                )
                hooks.append((validate_every, validate))
            if checkpoints is not None:
                hooks.append((checkpoint_every, checkpoints.hook()))
            hooks.extend(user_hooks)
            self._check_stage_order(run_names, max_steps_stage1, settings["stage1"].max_steps)
            # the controller is frozen once stage 2 has started
            to_run = [n for n in run_names if n == "stage2" or self.steps_["stage2"] == 0]
            bar = tqdm(
                total=sum(max(settings[n].max_steps - self.steps_[n], 0) for n in to_run),
                desc="training",
                unit="step",
                disable=not progress_bar,
                dynamic_ncols=True,
            )
            try:
                for name in to_run:
                    stage_settings = settings[name]
                    deadline = None
                    if clock is not None:
                        stage_settings, deadline = self._fit_to_budget(
                            name, stage_settings, performance, data, clock, run_names
                        )
                        bar.total += stage_settings.max_steps - settings[name].max_steps
                        bar.refresh()
                    self._train_stage(
                        name,
                        stage_settings,
                        performance,
                        data,
                        hooks,
                        bar,
                        log_every,
                        deadline,
                        hp.warm_start_critic,
                    )
            finally:
                bar.close()

    def _simulate(self, n_cells: int, seed: int) -> np.ndarray:
        """``n_cells`` cells as a dense matrix (validation; the training stream is untouched)."""
        return np.concatenate(list(_sampling.generate_blocks(self, n_cells, seed)), axis=0)

    def _check_stage_order(
        self, run_names: tuple[str, ...], asked_stage1: int | None, total_stage1: int
    ) -> None:
        """Refuse stage 2 without a trained controller; warn when a stage-1 total is asked for
        after stage 2 has started (the controller is frozen then)."""
        if run_names == ("stage2",) and self.steps_["stage1"] == 0 and self.steps_["stage2"] == 0:
            raise InvalidInputError(
                "stages=(2,) on a model whose stage 1 has not trained: stage 2 generates the TFs "
                "with the causal controller, which would be untrained; train stage 1 first "
                "(stages=(1, 2) or (1,))"
            )
        frozen = self.steps_["stage2"] > 0 and "stage1" in run_names
        if frozen and asked_stage1 is not None and total_stage1 > self.steps_["stage1"]:
            warnings.warn(
                f"max_steps_stage1={total_stage1:,} is ignored: stage 2 has started, and the "
                f"causal controller stays frozen at its {self.steps_['stage1']:,} stage-1 steps "
                "(train a new model to train stage 1 further)",
                UserWarning,
                stacklevel=3,
            )

    def _fit_to_budget(self, name, settings, performance, data, clock, run_names):
        """Settings whose step total fits the time left for stage ``name``, and its deadline."""
        start = self.steps_[name]
        if start >= settings.max_steps:
            return settings, None
        speed = _budget.steps_per_second(self.module, name, settings, performance, data)
        seconds = clock.seconds_for(name, run_names)
        total = min(settings.max_steps, start + max(1, int(seconds * speed)))
        self.train_record_["steps_per_second"][name] = speed
        self.train_record_["planned_steps"][name] = total
        return replace(settings, max_steps=total), clock.deadline_for(name, run_names)

    def _callback_hooks(self, callbacks) -> list[tuple[int, Any]]:
        """Loop hooks that call the user's ``callback(model, stage, step)``."""
        hooks = []
        for pair in callbacks:
            if not isinstance(pair, (tuple, list)) or len(pair) != 2 or not callable(pair[1]):
                raise InvalidInputError(
                    f"callbacks must be (every, callable) pairs, e.g. [(100, fn)], got {pair!r}"
                )
            every, callback = pair
            every = check_positive_int(every, "callback interval")

            def hook(stage, step, callback=callback) -> None:  # steps_ already counts step
                callback(self, stage.name, int(step))

            hooks.append((every, hook))
        return hooks

    def _train_stage(
        self,
        name,
        settings,
        performance,
        data,
        hooks,
        bar,
        log_every,
        deadline=None,
        warm_start_critic=False,
    ) -> None:
        start = self.steps_[name]
        if start >= settings.max_steps:
            return
        if name == "stage2" and start == 0:  # the averaged controller is stage 2's controller
            self.module.adopt_average("controller")
            if warm_start_critic:
                self.module.critic.load_state_dict(self.module.controller_critic.state_dict())
        stage = self._runner.stage(name, settings, performance, data, self._stage_builder(name))
        if name == "stage2" and start == 0 and self.calibrate_targets:
            stage.calibrate()
        stage.start_average()
        clock = _budget.StepClock(
            name,
            start,
            settings.max_steps,
            deadline,
            warn_long=data.device.type == "cpu" and deadline is None,
        )
        self._runner.train_stage(
            name,
            stage,
            settings.max_steps,
            hooks=hooks,
            log_every=log_every,
            bar=bar,
            stop_after=clock,
        )

    def _stage_builder(self, name: str):
        """How the runner builds the stage object of ``name`` on this model's module."""

        def build(data, settings, rng, performance) -> WGANGPStage:
            return GROUNDGAN_STAGES[name](self.module, data, settings, rng, performance=performance)

        return build

    def _training_tensor(self) -> torch.Tensor:
        if self.adata is None:
            raise InvalidInputError(
                "this model has no training data: pass adata to GroundGAN.load to train it"
            )
        # the cells may have changed since setup_anndata: check them again, as the baselines do
        check_same_genes(self.adata, list(self.layout.var_names))
        matrix = matrix_of(self.adata, self._layer)
        what = "training data" if self._layer is None else f"adata.layers[{self._layer!r}]"
        try:
            check_library_normalized(matrix, self.library_size, what)
        except InvalidInputError as err:
            raise InvalidInputError(
                f"{err} (the cells changed after setup_anndata: fix them, or call "
                "gg.GroundGAN.setup_anndata again and build a new model)"
            ) from None
        X = to_dense(matrix).astype(np.float32, copy=False)
        check_enough_cells(X.shape[0])
        return torch.from_numpy(np.ascontiguousarray(X))

    # sampling ------------------------------------------------------------------------------
    def sample(
        self,
        n_cells: int,
        seed: int | None = 0,
        path: str | Path | None = None,
        chunk_size: int | None = None,
        allow_untrained: bool = False,
    ) -> AnnData:
        """Simulate ``n_cells`` cells.

        Cells are generated in blocks of ``sample_block_size`` (BatchNorm with batch
        statistics, as in the paper); the last block is drawn in full and trimmed, so
        ``sample(10, seed=0)`` is the first 10 cells of ``sample(5000, seed=0)``.

        Parameters
        ----------
        n_cells
            Number of cells.
        seed
            Same seed (on the same device) -> identical cells; 0 by default, as for every
            model. ``None`` draws one (recorded in ``uns["groundgan"]["seed"]``).
        path
            Stream the cells into a new ``.h5ad`` file at this path (refused when it exists),
            with memory bounded by ``chunk_size``; the returned AnnData is then backed by that
            file (read-only). ``None``: the cells are returned in memory.
        chunk_size
            When streaming to ``path``: cells held in memory at once (rounded up to whole
            blocks); default ``8 * sample_block_size``.
        allow_untrained
            Sample a model whose stage 2 has not trained (``is_trained_`` is False), e.g. to
            compare cells before and after training. Without it such a model is refused.

        Returns
        -------
        AnnData
            The simulated cells, on the training genes:

            - ``X``: float32 values >= 0 summing to the library size per cell;
            - ``var["grn_role"]``: ``"tf"`` (a regulator, regulated or not) or ``"target"``;
            - ``var["grn_level"]`` for a GRN with TF -> TF edges: 0 for root TFs, else one
              more than the highest level among the gene's regulators;
            - ``obs["simulated"]`` (``True``);
            - ``uns["groundgan"]``: model, version, seed and steps;
            - ``uns["groundgan_grn"]``: the imposed GRN, the ground truth of these cells.

        Raises
        ------
        InvalidInputError
            ``n_cells`` or ``seed`` invalid, or an untrained model without
            ``allow_untrained=True``.
        """
        n_cells = check_positive_int(n_cells, "n_cells")
        _perturb.check_trained(self, allow_untrained, "sample()")
        return _sampling.sample(self, n_cells, resolve_seed(seed), path, chunk_size)

    # perturbation --------------------------------------------------------------------------
    def replay_state(
        self, n_cells: int, seed: int | None = 0, allow_untrained: bool = False
    ) -> _perturb.ReplayState:
        """The state that determines ``n_cells`` control cells, for exact, reusable replay.

        It holds the causal controller's noise, the target generators' noise, the pre-LSN TF
        expression, the per-cell LSN scale and the BatchNorm statistics of the control pass (per
        block of ``sample_block_size`` cells), drawn exactly like :meth:`sample`: the control
        cells replayed from it are those of ``sample(n_cells, seed)``, bit for bit. Pass it to
        :meth:`perturb` (``state=``) to perturb the same cells repeatedly; save it with
        ``state.save(path)`` (``.npz``, no pickles) and restore it with ``ReplayState.load(path)``
        (:class:`groundgan.model.ReplayState`). It records a fingerprint of the model's
        weights: another model (or this one after further training) refuses it.

        Parameters
        ----------
        n_cells
            Number of control cells.
        seed
            Seed of the cells, as in :meth:`sample` (default 0; ``None`` draws one, recorded
            in the state).
        allow_untrained
            Draw the state of a model whose stage 2 has not trained (no steps), as in
            :meth:`sample`. Without it such a model is refused.

        Returns
        -------
        ReplayState
            The state of the ``n_cells`` control cells (on the CPU), for ``perturb(...,
            state=state)``.

        Examples
        --------
        >>> state = model.replay_state(1000, seed=0)
        >>> ko = model.perturb({"SPI1": 0.0}, state=state)
        >>> state.save("pbmc_state.npz")
        """
        return _perturb.replay_state(self, n_cells, seed, allow_untrained)

    def perturb(
        self,
        perturbations: _perturb.Perturbations,
        n_cells: int | None = None,
        seed: int | None = None,
        mode: Literal["set", "scale"] = "set",
        state: _perturb.ReplayState | None = None,
        allow_untrained: bool = False,
    ) -> _perturb.MuData:
        """In-silico perturbation of TFs with exact replay; returns matched cells as MuData.

        The control cells are those of ``sample(n_cells, seed)``. For each perturbation the
        named TFs are changed and only the target generators are re-run, level by level, with
        everything else replayed: both noises, the per-cell LSN scale and the control pass's
        BatchNorm statistics (recomputed statistics would subtract a TF set to one constant in
        every cell and hide the perturbation). A root TF is changed where the causal
        controller emits it; a TF regulated by other TFs is clamped, its own generator's output
        replaced (the do-operator), so its regulators are untouched. Genes that are not
        downstream of a perturbed TF are therefore bitwise identical to the control; in a GRN
        with TF -> TF edges, the effect reaches targets of targets.

        Values are in output units (library-size normalised, as in :meth:`sample`). Perturbed
        cells are not re-normalised, so they no longer sum exactly to the library size. Control
        cells that came out all zero (LSN scale 0; rare) have no output scale and are left
        unchanged (``obs["zero_cell"]``).

        Parameters
        ----------
        perturbations
            ``{TF: value}`` or a list of such dicts (one perturbed modality each); several TFs
            in one dict are perturbed together. Only TFs of the GRN can be perturbed.
        n_cells
            Number of cells (not needed with ``state``).
        seed
            Seed of the cells, as in :meth:`sample`. ``None`` (the default): the seed of
            ``state``, or 0 without one, the default of :meth:`sample`.
        mode
            ``"set"``: the TF's value becomes ``value`` in every cell (knockout: 0);
            ``"scale"``: the TF's value is multiplied by ``value`` (2: twofold overexpression).
        state
            A :meth:`replay_state` to replay (``n_cells`` and ``seed`` then come from it).
        allow_untrained
            Perturb a model whose stage 2 has not trained, as in :meth:`sample`. Without it such
            a model is refused.

        Returns
        -------
        mudata.MuData
            With ``axis=1`` (the modalities share the genes): ``"control"`` and one modality
            per perturbation, named ``"SPI1=0"``, ``"GATA1=0,TAL1=0"`` or ``"SPI1*2"``.

            - Row ``i`` of every modality is the same simulated cell: obs names
              ``"<modality>:sim_<i>"`` with ``obs["cell"] = "sim_<i>"`` (the obs name in
              :meth:`sample`).
            - ``var`` holds ``grn_role``, ``perturbed_tf``, ``direct_target``,
              ``downstream`` (reached from a perturbed TF at any distance) and ``distance``
              (shortest path from the perturbed TFs: 0 for themselves, -1 if not reached).
            - ``mdata.uns`` holds ``"groundgan_perturbations"`` (a table: modality, gene,
              value, mode), ``"groundgan"`` (seed, n_cells, mode, model) and
              ``"groundgan_grn"`` (the imposed GRN).

        Raises
        ------
        ValueError
            Naming the problem: unknown gene, a target gene instead of a TF, NaN/infinite or
            negative values, an empty perturbation, an unknown mode, an untrained model
            (without ``allow_untrained=True``), a state from another model,
            ``n_cells``/``seed`` that disagree with ``state``.

        Examples
        --------
        >>> ko = model.perturb({"SPI1": 0.0}, n_cells=1000, seed=0)
        >>> ko.mod["control"], ko.mod["SPI1=0"]
        >>> both = model.perturb([{"SPI1": 0.0}, {"GATA1": 0.0, "TAL1": 0.0}], n_cells=1000, seed=0)
        >>> up = model.perturb({"SPI1": 2.0}, mode="scale", n_cells=1000, seed=0)  # "SPI1*2"
        >>> gg.tl.perturbation_effect(ko)
        """
        return _perturb.perturb(self, perturbations, n_cells, seed, mode, state, allow_untrained)

    # persistence ---------------------------------------------------------------------------
    def save(self, dir_path: str | Path, overwrite: bool = False) -> None:
        """Write the model to a directory: weights (state dicts), ``model.json``, genes, GRN.

        No pickled Python objects: weights load with ``torch.load(weights_only=True)``.
        ``model.json`` holds the constructor's parameters, :attr:`steps_` and
        :attr:`train_record_`.

        Parameters
        ----------
        dir_path
            The directory; created if needed. It must be empty or absent unless ``overwrite``.
        overwrite
            Also write into a directory that is not empty (its model files are replaced).
        """
        _io.save_model(self, Path(dir_path), overwrite)

    @classmethod
    def load(
        cls, dir_path: str | Path, adata: AnnData | None = None, device: str = "cpu"
    ) -> GroundGAN:
        """Restore a model written by :meth:`save`; it samples identically.

        Parameters
        ----------
        dir_path
            A directory written by :meth:`save`.
        adata
            Training cells with the model's genes, in the same order; with them the model can
            be trained further. ``adata`` is set up with the saved GRN when it is not set up
            yet. ``None``: the model can sample and perturb, not train.
        device
            Torch device of the weights: ``"cpu"``, ``"cuda"``, ``"cuda:N"`` or ``"auto"``
            (CUDA when available).

        Returns
        -------
        GroundGAN
            The restored model.
        """
        return _io.load_model(cls, Path(dir_path), adata, device)

    def _state(self) -> dict[str, Any]:
        """JSON-serialisable description (init parameters, steps, layout summary)."""
        return self._saved_record(self._layer, steps=dict(self.steps_), training=self.train_record_)
