"""Model directories and training checkpoints: no pickles, atomic writes, checksums, a lock.

A model directory holds ``model.pt`` (state dicts, loaded with ``weights_only=True``),
``model.json`` (constructor arguments, version, steps), ``var_names.csv`` and ``grn.csv``.
A checkpoint directory holds ``checkpoint-<stage>-<step>.pt`` files, each with a
``.json`` manifest carrying its SHA-256, and a ``.lock`` file held with ``fcntl.flock`` while a
process trains into it (the OS drops the lock when the process dies, even by SIGKILL).
"""

from __future__ import annotations

import fcntl
import hashlib
import io
import json
import os
import warnings
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd
import torch
from anndata import AnnData

from .._validation import InvalidInputError, format_names
from ._setup import SETUP_KEY, GRNLayout, read_setup

if TYPE_CHECKING:
    from ._groundgan import GroundGAN

CHECKPOINT_FORMAT = 1
MODEL_FILES = ("model.pt", "model.json", "var_names.csv", "grn.csv")


class CheckpointLockedError(RuntimeError):
    """Another live process is training into the same checkpoint directory."""


# atomic files ------------------------------------------------------------------------------
def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` via a temporary file, fsync and ``os.replace``."""
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    _fsync_dir(path.parent)


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def torch_bytes(obj) -> bytes:
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    return buffer.getvalue()


def load_weights(path: Path, device: str | torch.device = "cpu"):
    """``torch.load`` with ``weights_only=True``: a planted pickle is refused, never executed."""
    try:
        return torch.load(path, map_location=device, weights_only=True)
    except Exception as err:  # UnpicklingError and friends
        raise InvalidInputError(f"{path} is not a groundgan weights file ({err.__class__.__name__}: "
                                f"{str(err).splitlines()[0] if str(err) else ''})") from err


# model directories -------------------------------------------------------------------------
def save_model(model: GroundGAN, dir_path: Path, overwrite: bool) -> None:
    if dir_path.exists() and any(dir_path.iterdir()) and not overwrite:
        raise InvalidInputError(f"{dir_path} exists and is not empty; pass overwrite=True")
    dir_path.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu() for k, v in model.module.state_dict().items()}
    atomic_write_bytes(dir_path / "model.pt", torch_bytes(state))
    record = model._state()
    atomic_write_bytes(dir_path / "model.json", json.dumps(record, indent=2).encode())
    genes = pd.DataFrame({"gene": model.layout.var_names}).to_csv(index=False).encode()
    atomic_write_bytes(dir_path / "var_names.csv", genes)
    atomic_write_bytes(dir_path / "grn.csv", model.grn.to_csv(index=False).encode())


def load_model(cls, dir_path: Path, adata: AnnData | None, device: str) -> GroundGAN:
    missing = [f for f in MODEL_FILES if not (dir_path / f).exists()]
    if missing:
        raise InvalidInputError(f"{dir_path} is not a groundgan model directory (missing {missing})")
    record = json.loads((dir_path / "model.json").read_text())
    if record.get("model") != cls.__name__:
        raise InvalidInputError(f"{dir_path} holds a {record.get('model')!r}, not a {cls.__name__}")
    var_names = pd.read_csv(dir_path / "var_names.csv", dtype=str)["gene"].tolist()
    grn = pd.read_csv(dir_path / "grn.csv", dtype={"tf": str, "target": str})
    layout = GRNLayout.from_grn(grn, var_names)
    if adata is not None:
        _check_adata_matches(adata, var_names, grn, record, cls)
    model = cls.__new__(cls)
    model.adata = adata
    model._layer = record.get("layer")
    model._build(layout, record["library_size"], record["init_params"])
    model.module.load_state_dict(load_weights(dir_path / "model.pt"))
    model.module.to(device)
    model.steps_ = {k: int(v) for k, v in record["steps"].items()}
    return model


def _check_adata_matches(adata: AnnData, var_names, grn, record, cls) -> None:
    names = list(map(str, adata.var_names))
    if names != var_names:
        absent = sorted(set(var_names) - set(names))
        extra = sorted(set(names) - set(var_names))
        detail = []
        if absent:
            detail.append(f"missing from adata: {format_names(absent)}")
        if extra:
            detail.append(f"not in the model: {format_names(extra)}")
        if not detail:
            detail.append("same genes in another order")
        raise InvalidInputError("adata's genes differ from the saved model's: " + "; ".join(detail))
    if SETUP_KEY not in adata.uns:
        cls.setup_anndata(adata, grn=grn, layer=record.get("layer"))
    else:
        layout, _, _ = read_setup(adata)
        saved = set(zip(grn["tf"], grn["target"], strict=True))
        current = set(zip(layout.grn["tf"], layout.grn["target"], strict=True))
        if saved != current:
            raise InvalidInputError("adata is set up with another GRN than the saved model's")


# training checkpoints ----------------------------------------------------------------------
class Checkpointer:
    """Atomic, checksummed, rotating checkpoints in a locked directory."""

    def __init__(self, directory: Path, keep: int, lock_file):
        self.directory, self.keep, self._lock_file = directory, keep, lock_file

    @classmethod
    def open(cls, directory, keep: int) -> Checkpointer:
        directory = Path(directory)
        if keep < 1:
            raise InvalidInputError(f"keep_checkpoints must be >= 1, got {keep}")
        directory.mkdir(parents=True, exist_ok=True)
        lock_file = open(directory / ".lock", "a+")  # noqa: SIM115 (held for the run)
        try:
            fcntl.flock(lock_file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            lock_file.close()
            raise CheckpointLockedError(
                f"another process is training into {directory} (its lock is held); "
                "wait for it or choose another checkpoint_dir"
            ) from None
        return cls(directory, keep, lock_file)

    def close(self) -> None:
        fcntl.flock(self._lock_file, fcntl.LOCK_UN)
        self._lock_file.close()

    # writing -------------------------------------------------------------------------------
    def hook(self, model: GroundGAN):
        def write(stage, step: int) -> None:
            steps = dict(model.steps_)
            steps[stage.name] = step
            self.write(model, steps)

        return write

    def write(self, model: GroundGAN, steps: dict[str, int]) -> Path:
        stage = "stage2" if steps["stage2"] > 0 else "stage1"
        name = f"checkpoint-{stage}-{steps[stage]:09d}"
        payload = torch_bytes(checkpoint_payload(model, steps))
        path = self.directory / f"{name}.pt"
        atomic_write_bytes(path, payload)
        manifest = {
            "format": CHECKPOINT_FORMAT,
            "sha256": hashlib.sha256(payload).hexdigest(),
            "steps": steps,
        }
        atomic_write_bytes(path.with_suffix(".json"), json.dumps(manifest).encode())
        self._rotate()
        return path

    def _rotate(self) -> None:
        for old in self.checkpoints()[: -self.keep]:
            old.unlink(missing_ok=True)
            old.with_suffix(".json").unlink(missing_ok=True)

    # reading -------------------------------------------------------------------------------
    def checkpoints(self) -> list[Path]:
        """Checkpoint files, oldest first (ordered by stage, then step)."""
        return sorted(self.directory.glob("checkpoint-stage*-*.pt"))

    def newest_valid(self) -> tuple[Path, dict] | None:
        """The newest checkpoint whose checksum verifies; corrupted ones are skipped with a warning."""
        for path in reversed(self.checkpoints()):
            problem = verify(path)
            if problem is None:
                return path, load_weights(path)
            warnings.warn(f"skipping checkpoint {path.name}: {problem}", UserWarning, stacklevel=3)
        return None

    def resume(self, model: GroundGAN) -> Path | None:
        """Restore ``model`` from the newest valid checkpoint, if any; returns its path."""
        found = self.newest_valid()
        if found is None:
            return None
        path, payload = found
        restore_payload(model, payload)
        return path


def verify(path: Path) -> str | None:
    """None when ``path`` matches its manifest's checksum, else what is wrong."""
    manifest_path = path.with_suffix(".json")
    if not manifest_path.exists():
        return "no manifest (interrupted write?)"
    try:
        manifest = json.loads(manifest_path.read_text())
    except json.JSONDecodeError:
        return "unreadable manifest"
    if manifest.get("format") != CHECKPOINT_FORMAT:
        return f"unknown checkpoint format {manifest.get('format')!r}"
    if hashlib.sha256(path.read_bytes()).hexdigest() != manifest.get("sha256"):
        return "checksum mismatch (truncated or corrupted)"
    return None


def checkpoint_payload(model: GroundGAN, steps: dict[str, int]) -> dict:
    """Everything that determines the future of a training run, as tensors and primitives."""
    return {
        "format": CHECKPOINT_FORMAT,
        "module": {k: v.detach().cpu() for k, v in model.module.state_dict().items()},
        "stages": {
            name: {"settings": asdict(stage.settings), **stage.state_dict()}
            for name, stage in model._stages.items()
        },
        "steps": dict(steps),
        "rng": model._rng.get_state(),
        "history": {c: model.history_[c].tolist() for c in model.history_.columns},
    }


def restore_payload(model: GroundGAN, payload: dict) -> None:
    model.module.load_state_dict(payload["module"])
    model.steps_ = {k: int(v) for k, v in payload["steps"].items()}
    model._rng.set_state(payload["rng"])
    model.history_ = pd.DataFrame(payload["history"])
    model._pending_stage_states = payload["stages"]
    model._stages = {}

