"""The training runner: the state of a training run, between a model and its stages.

Every GAN simulator (GroundGAN and the GAN baselines) trains through a
:class:`TrainingRunner`. It owns what a run is made of, so that a model only says which stages
it has and how to build them:

- the step count of each stage, the loss history and the validation history (plain rows);
- the training ``torch.Generator`` (one per device and seed);
- the stage objects, cached between calls and rebuilt, with their optimiser and schedule state,
  when the settings, the speed path, the generator or the cells change;
- hooks around :func:`~groundgan.train.run_stage`: checkpoints, validation, the user's;
- checkpoints: what they hold, writing them (also when Ctrl-C stops a run) and resuming from
  the newest valid one;
- validation: a score every few steps and the best model so far.

It knows tensors, networks and files, not genes: models pass what is theirs (a fingerprint of
the architecture, an evaluation function, a writer of model directories) as arguments.
"""

from __future__ import annotations

import json
import math
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn
from tqdm.auto import tqdm

from .._errors import InvalidInputError
from .._files import atomic_write_bytes, replace_dir_atomically
from .._version import __version__
from ._checkpoints import (
    CHECKPOINT_FORMAT,
    Checkpointer,
    check_finite_weights,
    progress_order,
    restore_rng_state,
    rng_state,
)
from ._loop import StepHook, TrainingInterrupted, run_stage
from ._performance import PerformanceOptions
from ._stages import StageSettings, WGANGPStage

#: ``build(data, settings, rng, performance)``: a new stage object of one stage.
StageBuilder = Callable[[Tensor, StageSettings, torch.Generator, PerformanceOptions], WGANGPStage]
#: ``evaluate() -> {"metric": value, ...}``: one validation of the model as it is now.
Evaluate = Callable[[], dict[str, float]]
#: ``write(directory)``: save the model as it stands into a fresh directory.
WriteModel = Callable[[Path], None]


class TrainingRunner:
    """The state of one model's training run, and the loop around its stages.

    Parameters
    ----------
    module
        The torch module holding every network of the model (saved in checkpoints).
    stage_names
        The model's stages in training order, e.g. ``("stage1", "stage2")``.
    """

    def __init__(self, module: nn.Module, stage_names: Sequence[str]):
        self.module = module
        self.stage_names = tuple(stage_names)
        #: completed steps per stage
        self.steps: dict[str, int] = {name: 0 for name in self.stage_names}
        #: loss rows, one per logging window (see :func:`run_stage`)
        self.rows: list[dict[str, Any]] = []
        #: one row per validation (``stage``, ``step`` and the evaluation's figures)
        self.validation_rows: list[dict[str, Any]] = []
        self.stages: dict[str, WGANGPStage] = {}
        #: the per-cell labels each cached stage was built with (``None``: unlabelled)
        self.stage_labels: dict[str, Tensor | None] = {}
        #: stage states restored from a checkpoint, not yet given to a stage object
        self.pending_states: dict[str, dict] = {}
        self.rng: torch.Generator | None = None
        self.seed: int | None = None

    # the random stream ---------------------------------------------------------------------
    def generator(self, device: torch.device, seed: int) -> torch.Generator:
        """The training generator: kept across calls on the same device with the same seed
        (a repeated call goes on with the same stream), new otherwise."""
        if self.rng is None or self.rng.device != device or seed != self.seed:
            self.rng = torch.Generator(device=device).manual_seed(seed)
            self.seed = seed
        return self.rng

    # stages --------------------------------------------------------------------------------
    def stage(
        self,
        name: str,
        settings: StageSettings,
        performance: PerformanceOptions,
        data: Tensor,
        build: StageBuilder,
        *,
        labels: Tensor | None = None,
    ) -> WGANGPStage:
        """The stage object of ``name`` for these settings and cells.

        The cached one when nothing changed (settings, speed path, random stream, cells and
        the cells' ``labels``, the label codes of a conditional model that ``build`` closes
        over); otherwise a new one (``build``) that takes over the optimiser state of the old
        one, or of a resumed checkpoint, and whose schedule stands at the stage's completed
        steps. A new stage matters under CUDA graphs, whose captured step reads the tensors
        the stage was built with.
        """
        if self.rng is None:
            raise RuntimeError("TrainingRunner.generator() must be called before stage()")
        stage = self.stages.get(name)
        if (
            stage is not None
            and stage.settings == settings
            and stage.performance == performance
            and stage.rng is self.rng
            and same_cells(stage.data, data)
            and _same_labels(self.stage_labels.get(name), labels)
        ):
            return stage
        saved = self.pending_states.pop(name, None)
        if stage is not None:
            saved = {"settings": asdict(stage.settings), **stage.state_dict()}
        new = build(data, settings, self.rng, performance)
        if saved is not None:
            new.load_state_dict(saved, same_schedule=saved["settings"] == asdict(settings))
        new.fast_forward(self.steps[name], keep_loaded=saved is not None)
        new.completed_steps = self.steps[name]
        self.stages[name] = new
        self.stage_labels[name] = labels
        return new

    def train_stage(
        self,
        name: str,
        stage: WGANGPStage,
        max_steps: int,
        *,
        hooks: Sequence[tuple[int, StepHook]] = (),
        log_every: int = 100,
        progress_bar: bool = True,
        bar: tqdm | None = None,
        stop_after: Callable[[int], bool] | None = None,
    ) -> None:
        """Train ``stage`` from its completed steps up to ``max_steps``.

        Loss rows go to :attr:`rows` as they are logged; :attr:`steps` counts every completed
        step, also when training stops by an error or an interrupt, and already counts a
        step when a hook runs after it. The module is left in eval mode.
        """
        start = self.steps[name]
        if start >= max_steps:
            return
        stage.completed_steps = start
        counted = [(every, self._counting(name, hook)) for every, hook in hooks]
        try:
            run_stage(
                stage,
                start,
                max_steps,
                log_every=log_every,
                progress_bar=progress_bar,
                bar=bar,
                hooks=counted,
                rows=self.rows,
                stop_after=stop_after,
            )
        finally:
            self.steps[name] = stage.completed_steps
            self.module.eval()

    def _counting(self, name: str, hook: StepHook) -> StepHook:
        def counted(stage: WGANGPStage, step: int) -> None:
            self.steps[name] = int(step)
            hook(stage, step)

        return counted

    # checkpoints ---------------------------------------------------------------------------
    @contextmanager
    def checkpointing(
        self,
        directory: str | Path | None,
        keep: int,
        fingerprint: Mapping[str, Any],
        extra: Callable[[], dict[str, Any]] | None = None,
    ) -> Iterator[Checkpoints | None]:
        """Open (and lock) ``directory`` for the block, resume from its newest valid
        checkpoint, and write one when Ctrl-C stops the block (:class:`TrainingInterrupted`).

        Yields the :class:`Checkpoints` of the run (``None`` without a directory), whose
        :meth:`~Checkpoints.hook` writes checkpoints during training.
        """
        if not directory:
            yield None
            return
        checkpoints = Checkpoints(self, Checkpointer.open(directory, keep), fingerprint, extra)
        try:
            checkpoints.resume()
            yield checkpoints
        except TrainingInterrupted:  # a clean stop: keep it, so that a resume starts here
            checkpoints.write(dict(self.steps))
            raise
        finally:
            checkpoints.files.close()

    def checkpoint_payload(
        self,
        steps: Mapping[str, int],
        fingerprint: Mapping[str, Any],
        extra: Mapping[str, Any] | None = None,
    ) -> dict[str, Any]:
        """Everything that determines the future of the run, as tensors and plain values."""
        stages = dict(self.pending_states)  # restored but not yet rebuilt
        stages.update(
            {
                name: {"settings": asdict(stage.settings), **stage.state_dict()}
                for name, stage in self.stages.items()
            }
        )
        return {
            "format": CHECKPOINT_FORMAT,
            "groundgan": __version__,
            "fingerprint": dict(fingerprint),
            "module": {k: v.detach().cpu() for k, v in self.module.state_dict().items()},
            "stages": stages,
            "steps": {name: int(steps[name]) for name in self.stage_names},
            "rng": rng_state(self.rng),
            "history": rows_to_columns(self.rows),
            "validation_history": rows_to_columns(self.validation_rows),
            **(extra or {}),
        }

    def restore(self, payload: Mapping[str, Any]) -> None:
        """Put the run in the state recorded by :meth:`checkpoint_payload`."""
        self.module.load_state_dict(payload["module"])
        self.steps = {name: int(payload["steps"][name]) for name in self.stage_names}
        restore_rng_state(self.rng, payload["rng"])
        self.rows = columns_to_rows(payload["history"])
        self.validation_rows = columns_to_rows(payload.get("validation_history", {}))
        self.pending_states = dict(payload["stages"])
        self.stages = {}
        self.stage_labels = {}

    # validation ----------------------------------------------------------------------------
    def validation_hook(
        self,
        stage_name: str,
        evaluate: Evaluate,
        checkpoints: Checkpoints | None,
        write_model: WriteModel | None,
    ) -> StepHook:
        """A loop hook that validates after steps of stage ``stage_name`` (other stages are
        skipped): the row goes to :attr:`validation_rows`; a new best model is written to the
        checkpoint directory's ``best/`` by ``write_model``, atomically, with its row."""

        def validate(stage: WGANGPStage, step: int) -> None:
            if self.stages.get(stage_name) is not stage:
                return
            row = {"stage": stage.name, "step": int(step), **evaluate()}
            best = is_better(row, self.validation_rows)
            self.validation_rows.append(row)
            if best and checkpoints is not None and write_model is not None:
                checkpoints.save_best(write_model, row)

        return validate


class Checkpoints:
    """The checkpoints of one run: a locked :class:`Checkpointer` and what goes in them."""

    def __init__(
        self,
        runner: TrainingRunner,
        files: Checkpointer,
        fingerprint: Mapping[str, Any],
        extra: Callable[[], dict[str, Any]] | None,
    ):
        self.runner, self.files = runner, files
        self.fingerprint, self.extra = dict(fingerprint), extra

    def hook(self) -> StepHook:
        """A loop hook writing a checkpoint after the step it is called for."""

        def write(stage: WGANGPStage, step: int) -> None:
            self.write(dict(self.runner.steps))

        return write

    def write(self, steps: dict[str, int]) -> Path:
        """Write a checkpoint of the run at ``steps``.

        Raises
        ------
        NonFiniteLossError
            The weights hold NaN or infinite values; nothing is written, so the newest
            checkpoint on disk stays the last good one.
        """
        trained = [name for name in self.runner.stage_names if steps[name] > 0]
        stage = trained[-1] if trained else self.runner.stage_names[0]
        check_finite_weights(self.runner.module, stage, steps[stage])
        extra = self.extra() if self.extra is not None else None
        payload = self.runner.checkpoint_payload(steps, self.fingerprint, extra)
        return self.files.write(payload, steps)

    def resume(self) -> Path | None:
        """Restore the run from the newest valid checkpoint; its path, or ``None`` if none.

        Nothing is restored when the run already stands at the checkpoint's steps (the same
        run continuing in the same process). A run that has trained further than the
        checkpoint is rewound to it, with a warning. A checkpoint of another model is refused.
        """
        found = self.files.newest_valid()
        if found is None:
            return None
        path, payload = found
        self.check_fingerprint(payload, path)
        steps = {k: int(v) for k, v in payload["steps"].items()}
        if steps == self.runner.steps:
            return None
        if progress_order(self.runner.steps) > progress_order(steps):
            warnings.warn(
                f"the model has trained further ({self.runner.steps}) than the newest valid "
                f"checkpoint {path.name} ({steps}); rewinding it to the checkpoint",
                UserWarning,
                stacklevel=5,
            )
        self.runner.restore(payload)
        return path

    def check_fingerprint(self, payload: Mapping[str, Any], path: Path) -> None:
        """Refuse a checkpoint of another model (other architecture, genes, GRN, ...)."""
        saved = payload.get("fingerprint", {})
        differ = sorted(k for k in self.fingerprint if saved.get(k) != self.fingerprint[k])
        if differ:
            raise InvalidInputError(
                f"{path} was written by another model (different {', '.join(differ)}); use a "
                "fresh checkpoint_dir for this model"
            )

    def save_best(self, write_model: WriteModel, row: dict) -> None:
        """Replace ``best/`` by the model as it is now, atomically, with ``validation.json``."""

        def write(tmp: Path) -> None:
            write_model(tmp)
            record = {k: (v if isinstance(v, str) else float(v)) for k, v in row.items()}
            record["step"] = int(row["step"])
            atomic_write_bytes(tmp / "validation.json", json.dumps(record, indent=2).encode())

        replace_dir_atomically(write, self.files.best_dir)


# helpers -----------------------------------------------------------------------------------
def same_cells(a: Tensor, b: Tensor) -> bool:
    """Whether two training tensors hold the same cells (each ``train()`` call builds a new
    tensor from its AnnData, so identity says nothing; one comparison on the device does)."""
    return a.shape == b.shape and a.device == b.device and bool(torch.equal(a, b))


def _same_labels(a: Tensor | None, b: Tensor | None) -> bool:
    if a is None or b is None:
        return a is None and b is None
    return same_cells(a, b)


def is_better(row: Mapping[str, Any], history: Sequence[Mapping[str, Any]]) -> bool:
    """Whether ``row`` beats every earlier validation: a lower Euclidean centroid distance,
    then an RF AUROC closer to 0.5."""
    if not history:
        return True
    earlier = min(_rank(r) for r in history)
    return _rank(row) < earlier


def _rank(row: Mapping[str, Any]) -> tuple[float, float]:
    return float(row["euclidean"]), abs(float(row["rf_auroc"]) - 0.5)


def rows_to_columns(rows: Sequence[Mapping[str, Any]]) -> dict[str, list]:
    """Rows as columns of plain lists (``NaN`` where a row lacks a column), the layout of a
    table built from the rows and of checkpoints (loadable with ``weights_only=True``)."""
    names: dict[str, None] = {}
    for row in rows:
        names.update(dict.fromkeys(row))
    return {name: [row.get(name, math.nan) for row in rows] for name in names}


def columns_to_rows(columns: Mapping[str, Sequence[Any]]) -> list[dict[str, Any]]:
    """The inverse of :func:`rows_to_columns`: a row leaves out its NaN values (the columns it
    lacked; the rows of a run hold finite values only)."""
    names = list(columns)
    n = len(columns[names[0]]) if names else 0
    return [
        {name: value for name in names if not _is_nan(value := columns[name][i])} for i in range(n)
    ]


def _is_nan(value: Any) -> bool:
    return isinstance(value, float) and math.isnan(value)
