"""Model directories and training checkpoints: no pickles, atomic writes, checksums, a lock.

A model directory holds ``model.pt`` (state dicts, loaded with ``weights_only=True``),
``model.json`` (constructor arguments, version, steps), ``var_names.csv``, ``grn.csv`` and
``manifest.json`` (the checksums of the others, written last; see :mod:`._base`).

A checkpoint directory holds ``checkpoint-<stage>-<step>.pt`` files, each with a ``.json``
manifest carrying its SHA-256 and size, and a ``.lock`` file held with ``fcntl.flock`` while a
process trains into it (the OS drops the lock when the process dies, even by SIGKILL). Every
file is written to a temporary name, flushed, fsynced and moved into place with
``os.replace``, so a crash leaves either the old file or the new one, never half of one; a
checkpoint whose bytes do not match its manifest is skipped on resume with a warning.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shutil
import warnings
from dataclasses import asdict
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import torch
from anndata import AnnData

from .._devices import resolve_device
from .._files import (
    atomic_write_bytes,
    check_same_genes,
    check_save_dir,
    fsync_path,
    load_module_state,
    load_weights,
    torch_bytes,
)
from .._locks import DirectoryLockedError, lock_directory
from .._validation import InvalidInputError, check_positive_int
from .._version import __version__
from ..train import NonFiniteLossError
from ._base import verify_model_files, write_model_files
from ._setup import GRNLayout, read_setup

if TYPE_CHECKING:
    from collections.abc import Callable

    from ..train import WGANGPStage
    from ._protocols import TrainableModel

#: Version of the checkpoint layout (payload keys and manifest); bumped on incompatible change.
CHECKPOINT_FORMAT = 2
MODEL_FILES = ("model.pt", "model.json", "var_names.csv", "grn.csv")
RECORD_KEYS = ("model", "init_params", "library_size", "steps")
CHECKPOINT_GLOB = "checkpoint-stage*-*.pt"
LOCK_FILE = ".lock"
#: Constructor arguments a checkpoint may be resumed across (no effect on weights or training).
FREE_PARAMS = ("seed", "sample_block_size")


class CheckpointLockedError(RuntimeError):
    """Another live process is training into the same checkpoint directory."""


# model directories -------------------------------------------------------------------------
def save_model(
    model: TrainableModel, dir_path: Path, overwrite: bool, steps: dict[str, int] | None = None
) -> None:
    """Write ``model`` into ``dir_path`` (see the module docstring for the files).

    ``steps`` overrides the recorded step counts (a model saved in the middle of a stage,
    whose ``steps_`` are only updated when the stage returns).
    """
    check_save_dir(dir_path, overwrite)  # before anything is serialised
    record = model._state()
    if steps is not None:
        record["steps"] = {k: int(v) for k, v in steps.items()}
    # serialise everything first, so an error leaves the directory untouched
    files = {
        "model.pt": torch_bytes(
            {k: v.detach().cpu() for k, v in model.module.state_dict().items()}
        ),
        "model.json": json.dumps(record, indent=2).encode(),
        "var_names.csv": pd.DataFrame({"gene": model.layout.var_names})
        .to_csv(index=False)
        .encode(),
        "grn.csv": model.grn.to_csv(index=False).encode(),
    }
    write_model_files(dir_path, files, overwrite)


def load_model(cls, dir_path: Path, adata: AnnData | None, device: str) -> TrainableModel:
    """Restore a model written by :func:`save_model`; ``adata`` is checked before it is set up."""
    device = resolve_device(device)  # a CUDA device without CUDA: a one-line error, first
    record, var_names, grn = _read_model_dir(cls, dir_path)
    layout = GRNLayout.from_grn(grn, var_names)
    if adata is not None:
        check_same_genes(adata, var_names)
    model = cls.__new__(cls)
    model.adata = None
    model._layer = record.get("layer")
    model._build(layout, record["library_size"], record["init_params"])
    load_module_state(model.module, dir_path / "model.pt", "model.json")
    verify_model_files(dir_path)  # after the weights: a planted pickle is refused as such
    model.module.to(device)
    model.steps_ = {k: int(v) for k, v in record["steps"].items()}
    model.train_record_ = record.get("training", {})
    if adata is not None:  # only now, once everything has loaded: adata may be set up
        _check_adata_setup(adata, grn, record, cls)
        model.adata = adata
    return model


def _read_model_dir(cls, dir_path: Path) -> tuple[dict, list[str], pd.DataFrame]:
    if not dir_path.is_dir():
        raise InvalidInputError(f"{dir_path} is not a directory (no saved model there)")
    missing = [f for f in MODEL_FILES if not (dir_path / f).is_file()]
    if missing:
        raise InvalidInputError(
            f"{dir_path} is not a groundgan model directory (missing {', '.join(missing)})"
        )
    try:
        record = json.loads((dir_path / "model.json").read_text())
        var_names = pd.read_csv(dir_path / "var_names.csv", dtype=str)["gene"].tolist()
        grn = pd.read_csv(dir_path / "grn.csv", dtype={"tf": str, "target": str})
    except (ValueError, KeyError, UnicodeDecodeError) as err:  # JSON, CSV and column errors
        raise InvalidInputError(
            f"{dir_path} holds an unreadable groundgan model ({type(err).__name__}: {err})"
        ) from err
    absent = [k for k in RECORD_KEYS if not isinstance(record, dict) or k not in record]
    absent += [c for c in ("tf", "target") if c not in grn.columns]
    if absent:
        raise InvalidInputError(
            f"{dir_path} holds an incomplete groundgan model (no {', '.join(absent)})"
        )
    if record.get("model") != cls.__name__:
        raise InvalidInputError(f"{dir_path} holds a {record.get('model')!r}, not a {cls.__name__}")
    return record, var_names, grn


def _check_adata_setup(adata: AnnData, grn: pd.DataFrame, record: dict, cls) -> None:
    if not cls.is_set_up(adata):
        cls.setup_anndata(adata, grn=grn, layer=record.get("layer"))
        return
    layout, _, _ = read_setup(adata)
    saved = set(zip(grn["tf"], grn["target"], strict=True))
    current = set(zip(layout.grn["tf"], layout.grn["target"], strict=True))
    if saved != current:
        raise InvalidInputError("adata is set up with another GRN than the saved model's")


def replace_dir_atomically(write: Callable[[Path], None], target: Path) -> None:
    """Fill a fresh temporary directory with ``write(tmp)`` and swap it in for ``target``.

    POSIX cannot rename a directory onto a non-empty one, so the old ``target`` is first moved
    aside to ``.<name>.old`` (restored by :func:`recover_dir` should a crash fall in between).
    """
    tmp = target.with_name(f".{target.name}.tmp")
    old = target.with_name(f".{target.name}.old")
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        write(tmp)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    shutil.rmtree(old, ignore_errors=True)
    if target.exists():
        os.replace(target, old)
    os.replace(tmp, target)
    fsync_path(target.parent)
    shutil.rmtree(old, ignore_errors=True)


def recover_dir(target: Path) -> None:
    """Undo a swap by :func:`replace_dir_atomically` that a crash interrupted."""
    old = target.with_name(f".{target.name}.old")
    if old.exists() and not target.exists():
        os.replace(old, target)
    shutil.rmtree(target.with_name(f".{target.name}.tmp"), ignore_errors=True)
    shutil.rmtree(old, ignore_errors=True)


# training checkpoints ----------------------------------------------------------------------
def model_fingerprint(model: TrainableModel) -> dict[str, Any]:
    """What a checkpoint must match to be resumed into ``model`` (architecture, genes, GRN)."""
    edges = sorted(zip(model.layout.grn["tf"], model.layout.grn["target"], strict=True))
    return {
        "model": type(model).__name__,
        "init_params": {
            k: v
            for k, v in json.loads(json.dumps(model.init_params_)).items()
            if k not in FREE_PARAMS
        },
        "library_size": float(model.library_size),
        "genes_sha256": _sha256_text("\n".join(model.layout.var_names)),
        "grn_sha256": _sha256_text("\n".join(f"{tf}\t{target}" for tf, target in edges)),
    }


def _sha256_text(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def checkpoint_name(steps: dict[str, int]) -> str:
    """``checkpoint-<stage>-<step>``: names sort by stage, then step."""
    stage = "stage2" if steps["stage2"] > 0 else "stage1"
    return f"checkpoint-{stage}-{steps[stage]:09d}"


class Checkpointer:
    """Atomic, checksummed, rotating checkpoints in a directory locked by this process.

    Open it with :meth:`open`, which takes the directory's lock (or raises
    :class:`CheckpointLockedError`), and release it with :meth:`close`.
    """

    def __init__(self, directory: Path, keep: int, lock_file: IO[str] | None = None):
        self.directory, self.keep, self._lock_file = Path(directory), keep, lock_file

    @classmethod
    def open(cls, directory: str | Path, keep: int) -> Checkpointer:
        """Create ``directory`` if needed, lock it and tidy what an earlier crash left there.

        Raises
        ------
        CheckpointLockedError
            Another live process holds the directory's lock.
        """
        keep = check_positive_int(keep, "keep_checkpoints")
        directory = Path(directory)
        if directory.exists() and not directory.is_dir():
            raise InvalidInputError(f"checkpoint_dir {directory} is a file, not a directory")
        directory.mkdir(parents=True, exist_ok=True)
        try:
            lock_file = lock_directory(directory / LOCK_FILE)
        except DirectoryLockedError as err:
            raise CheckpointLockedError(
                f"another process (pid {err.holder}) is training into {directory}; wait for it "
                "to finish or choose another checkpoint_dir"
            ) from None
        checkpointer = cls(directory, keep, lock_file)
        checkpointer._tidy()
        return checkpointer

    def close(self) -> None:
        """Release the lock (the OS also releases it when the process dies)."""
        if self._lock_file is None or self._lock_file.closed:
            return
        fcntl.flock(self._lock_file, fcntl.LOCK_UN)
        self._lock_file.close()

    def __enter__(self) -> Checkpointer:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    @property
    def best_dir(self) -> Path:
        """Where the validation monitor keeps the best model so far."""
        return self.directory / "best"

    def _tidy(self) -> None:
        """Remove temporary files and orphan manifests of interrupted writes (lock held)."""
        for tmp in self.directory.glob(".*.tmp"):
            if tmp.is_file():
                tmp.unlink(missing_ok=True)
        for manifest in self.directory.glob("checkpoint-stage*-*.json"):
            if not manifest.with_suffix(".pt").exists():
                manifest.unlink(missing_ok=True)
        recover_dir(self.best_dir)

    # writing -------------------------------------------------------------------------------
    def hook(self, model: TrainableModel) -> Callable[[WGANGPStage, int], None]:
        """A training-loop hook writing a checkpoint of ``model`` after ``step`` of ``stage``."""

        def write(stage: WGANGPStage, step: int) -> None:
            steps = dict(model.steps_)
            steps[stage.name] = step
            self.write(model, steps)

        return write

    def write(self, model: TrainableModel, steps: dict[str, int]) -> Path:
        """Write a checkpoint of ``model`` at ``steps`` and drop all but the newest ``keep``.

        Raises
        ------
        NonFiniteLossError
            The weights hold NaN or infinite values; nothing is written, so the newest
            checkpoint on disk stays the last good one.
        """
        check_finite_weights(model, steps)
        payload = torch_bytes(checkpoint_payload(model, steps))
        path = self.directory / f"{checkpoint_name(steps)}.pt"
        atomic_write_bytes(path, payload)
        manifest = {
            "format": CHECKPOINT_FORMAT,
            "groundgan": __version__,
            "sha256": hashlib.sha256(payload).hexdigest(),
            "size": len(payload),
            "steps": steps,
        }
        atomic_write_bytes(path.with_suffix(".json"), json.dumps(manifest, indent=1).encode())
        self._rotate()
        return path

    def _rotate(self) -> None:
        for old in self.checkpoints()[: -self.keep]:
            old.with_suffix(".json").unlink(missing_ok=True)
            old.unlink(missing_ok=True)

    # reading -------------------------------------------------------------------------------
    def checkpoints(self) -> list[Path]:
        """Checkpoint files, oldest first (ordered by stage, then step)."""
        return sorted(self.directory.glob(CHECKPOINT_GLOB))

    def newest_valid(self) -> tuple[Path, dict] | None:
        """The newest checkpoint whose bytes match its manifest, loaded; ``None`` if none.

        Truncated or corrupted checkpoints are skipped with a warning. A checkpoint whose
        checksum matches but which holds anything but tensors and plain values is refused with
        an error (it was planted, not damaged).
        """
        for path in reversed(self.checkpoints()):
            data, problem = read_verified(path)
            if data is None:
                warnings.warn(
                    f"skipping checkpoint {path.name}: {problem}", UserWarning, stacklevel=3
                )
                continue
            payload = load_weights(data, path)
            if not isinstance(payload, dict) or payload.get("format") != CHECKPOINT_FORMAT:
                raise InvalidInputError(
                    f"{path} is not a groundgan checkpoint of format {CHECKPOINT_FORMAT}"
                )
            return path, payload
        return None

    def resume(self, model: TrainableModel) -> Path | None:
        """Restore ``model`` from the newest valid checkpoint; returns its path (``None``: none).

        Nothing is restored when ``model`` already stands at the checkpoint's steps (the same
        run continuing in the same process). A model that has trained further than the
        checkpoint is rewound to it, with a warning.
        """
        found = self.newest_valid()
        if found is None:
            return None
        path, payload = found
        check_fingerprint(model, payload, path)
        steps = {k: int(v) for k, v in payload["steps"].items()}
        if steps == model.steps_:
            return None
        if _order(model.steps_) > _order(steps):
            warnings.warn(
                f"the model has trained further ({model.steps_}) than the newest valid checkpoint "
                f"{path.name} ({steps}); rewinding it to the checkpoint",
                UserWarning,
                stacklevel=3,
            )
        restore_payload(model, payload)
        return path


def _order(steps: dict[str, int]) -> tuple[int, int]:
    return steps["stage2"], steps["stage1"]


def read_verified(path: Path) -> tuple[bytes | None, str | None]:
    """``(bytes, None)`` when ``path`` matches its manifest, else ``(None, what is wrong)``."""
    manifest_path = path.with_suffix(".json")
    if not manifest_path.exists():
        return None, "no manifest (interrupted write?)"
    try:
        manifest = json.loads(manifest_path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError):
        return None, "unreadable manifest"
    if not isinstance(manifest, dict):
        return None, "unreadable manifest"
    if manifest.get("format") != CHECKPOINT_FORMAT:
        return None, f"unknown checkpoint format {manifest.get('format')!r}"
    data = path.read_bytes()
    if "size" in manifest and len(data) != manifest["size"]:
        return None, f"truncated ({len(data)} of {manifest['size']} bytes)"
    if hashlib.sha256(data).hexdigest() != manifest.get("sha256"):
        return None, "checksum mismatch (corrupted)"
    return data, None


def verify(path: Path) -> str | None:
    """``None`` when ``path`` matches its manifest's checksum, else what is wrong."""
    return read_verified(path)[1]


def check_fingerprint(model: TrainableModel, payload: dict, path: Path) -> None:
    """Refuse a checkpoint of another model (other architecture, genes or GRN)."""
    saved, current = payload.get("fingerprint", {}), model_fingerprint(model)
    differ = sorted(k for k in current if saved.get(k) != current[k])
    if differ:
        raise InvalidInputError(
            f"{path} was written by another model (different {', '.join(differ)}); use a fresh "
            "checkpoint_dir for this model"
        )


def check_finite_weights(model: TrainableModel, steps: dict[str, int]) -> None:
    """Raise :class:`NonFiniteLossError` when any weight is NaN or infinite (one host sync)."""
    tensors = [t for t in model.module.state_dict().values() if t.is_floating_point()]
    if tensors and not bool(torch.stack([torch.isfinite(t).all() for t in tensors]).all()):
        stage = checkpoint_name(steps).split("-")[1]
        raise NonFiniteLossError(
            f"{stage}: non-finite weights after step {steps[stage]}; training stopped, no "
            "checkpoint written (the newest one on disk is the last good one)"
        )


# what a checkpoint holds -------------------------------------------------------------------
def checkpoint_payload(model: TrainableModel, steps: dict[str, int]) -> dict:
    """Everything that determines the future of a training run, as tensors and plain values."""
    stages = dict(model._pending_stage_states)  # restored but not yet rebuilt
    stages.update(
        {
            name: {"settings": asdict(stage.settings), **stage.state_dict()}
            for name, stage in model._stages.items()
        }
    )
    return {
        "format": CHECKPOINT_FORMAT,
        "groundgan": __version__,
        "fingerprint": model_fingerprint(model),
        "module": {k: v.detach().cpu() for k, v in model.module.state_dict().items()},
        "stages": stages,
        "steps": dict(steps),
        "rng": rng_state(model),
        "history": frame_to_dict(model._history_so_far()),
        "validation_history": frame_to_dict(model.validation_history_),
    }


def restore_payload(model: TrainableModel, payload: dict) -> None:
    """Put ``model`` in the state recorded by :func:`checkpoint_payload`."""
    model.module.load_state_dict(payload["module"])
    model.steps_ = {k: int(v) for k, v in payload["steps"].items()}
    restore_rng_state(model, payload["rng"])
    model.history_ = pd.DataFrame(payload["history"])
    model.validation_history_ = pd.DataFrame(payload.get("validation_history", {}))
    model._pending_stage_states = dict(payload["stages"])
    model._stages = {}


def frame_to_dict(frame: pd.DataFrame) -> dict[str, list]:
    """A DataFrame as plain lists (loadable with ``weights_only=True``)."""
    return {str(c): frame[c].tolist() for c in frame.columns}


def rng_state(model: TrainableModel) -> dict[str, Any]:
    """The training generator's state, plus torch's and numpy's global ones."""
    state: dict[str, Any] = {"torch": torch.get_rng_state(), "numpy": _numpy_state()}
    if model._rng is not None:
        state["training"] = model._rng.get_state()
        state["training_device"] = model._rng.device.type
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng_state(model: TrainableModel, state: dict[str, Any]) -> None:
    """Restore the training generator (when on the same kind of device) and the global states."""
    torch.set_rng_state(state["torch"])
    np.random.set_state(  # noqa: NPY002 (the legacy global state is what we save)
        (
            state["numpy"]["bit_generator"],
            state["numpy"]["keys"].numpy().astype(np.uint32),
            int(state["numpy"]["pos"]),
            int(state["numpy"]["has_gauss"]),
            float(state["numpy"]["cached_gaussian"]),
        )
    )
    cuda = state.get("cuda")
    if cuda is not None and torch.cuda.is_available() and torch.cuda.device_count() == len(cuda):
        torch.cuda.set_rng_state_all(cuda)
    if "training" not in state or model._rng is None:
        return
    if state["training_device"] != model._rng.device.type:
        warnings.warn(
            f"the checkpoint was trained on {state['training_device']} and resumes on "
            f"{model._rng.device.type}: its random stream cannot carry over, so the run will not "
            "repeat an uninterrupted one exactly",
            UserWarning,
            stacklevel=4,
        )
        return
    model._rng.set_state(state["training"])


def _numpy_state() -> dict[str, Any]:
    name, keys, pos, has_gauss, cached = np.random.get_state(legacy=True)  # noqa: NPY002
    return {
        "bit_generator": str(name),
        "keys": torch.from_numpy(keys.astype(np.int64)),
        "pos": int(pos),
        "has_gauss": int(has_gauss),
        "cached_gaussian": float(cached),
    }
