"""Training checkpoints: atomic, checksummed, rotating files in a directory one process locks.

A checkpoint directory holds ``checkpoint-stage<k>-<step>.pt`` files (``k``: the stage's
position, from 1, in its model's order of stages), each with a ``.json`` manifest carrying its
SHA-256 and size, and a ``.lock`` file held with ``fcntl.flock`` while a process trains into it
(the OS drops the lock when the process dies, even by SIGKILL). Every file is written to a
temporary name, flushed, fsynced and moved into place with ``os.replace``, so a crash leaves
either the old file or the new one, never half of one; a checkpoint whose bytes do not match
its manifest is skipped on resume with a warning.

What goes into a checkpoint is the training runner's business
(:meth:`groundgan.train.TrainingRunner.checkpoint_payload`); this module only stores and
finds the files. It knows no model and no genes.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import IO, Any

import numpy as np
import torch
from torch import nn

from .._errors import InvalidInputError
from .._files import atomic_write_bytes, load_weights, recover_dir, torch_bytes
from .._locks import DirectoryLockedError, lock_directory
from .._version import __version__
from ._loop import NonFiniteLossError

#: Version of the checkpoint layout (payload keys and manifest); bumped on incompatible change.
CHECKPOINT_FORMAT = 2
CHECKPOINT_GLOB = "checkpoint-stage*-*.pt"
LOCK_FILE = ".lock"
#: The folder of a checkpoint directory where validation keeps the best model so far.
BEST_DIR = "best"


class CheckpointLockedError(RuntimeError):
    """Another live process is training into the same checkpoint directory."""


def checkpoint_name(steps: Mapping[str, int]) -> str:
    """``checkpoint-stage<k>-<step>`` of the last stage (in ``steps``' order) that has trained:
    names sort by stage, then step."""
    names = list(steps)
    last = max((i for i, name in enumerate(names) if steps[name] > 0), default=0)
    return f"checkpoint-stage{last + 1}-{steps[names[last]]:09d}"


def progress_order(steps: Mapping[str, int]) -> tuple[int, ...]:
    """A key that orders step counts by training progress (later stages first)."""
    return tuple(int(steps[name]) for name in reversed(list(steps)))


class Checkpointer:
    """Atomic, checksummed, rotating checkpoints in a directory locked by this process.

    Open it with :meth:`open`, which takes the directory's lock (or raises
    :class:`CheckpointLockedError`), and release it with :meth:`close` (or use it as a context
    manager).
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
        if isinstance(keep, bool) or not isinstance(keep, (int, np.integer)) or keep < 1:
            raise InvalidInputError(f"keep_checkpoints must be a positive integer, got {keep!r}")
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
        checkpointer = cls(directory, int(keep), lock_file)
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
        """Where validation keeps the best model so far."""
        return self.directory / BEST_DIR

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
    def write(self, payload: dict[str, Any], steps: Mapping[str, int]) -> Path:
        """Write ``payload`` as the checkpoint of ``steps``; drop all but the newest ``keep``."""
        data = torch_bytes(payload)
        path = self.directory / f"{checkpoint_name(steps)}.pt"
        atomic_write_bytes(path, data)
        manifest = {
            "format": CHECKPOINT_FORMAT,
            "groundgan": __version__,
            "sha256": hashlib.sha256(data).hexdigest(),
            "size": len(data),
            "steps": dict(steps),
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


def check_finite_weights(module: nn.Module, stage: str, step: int) -> None:
    """Raise :class:`NonFiniteLossError` when any weight is NaN or infinite (one host sync)."""
    tensors = [t for t in module.state_dict().values() if t.is_floating_point()]
    if tensors and not bool(torch.stack([torch.isfinite(t).all() for t in tensors]).all()):
        raise NonFiniteLossError(
            f"{stage}: non-finite weights after step {step}; training stopped, no "
            "checkpoint written (the newest one on disk is the last good one)"
        )


# random states -----------------------------------------------------------------------------
def rng_state(rng: torch.Generator | None) -> dict[str, Any]:
    """The training generator's state, plus torch's and numpy's global ones."""
    state: dict[str, Any] = {"torch": torch.get_rng_state(), "numpy": _numpy_state()}
    if rng is not None:
        state["training"] = rng.get_state()
        state["training_device"] = rng.device.type
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng_state(rng: torch.Generator | None, state: dict[str, Any]) -> None:
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
    if "training" not in state or rng is None:
        return
    if state["training_device"] != rng.device.type:
        warnings.warn(
            f"the checkpoint was trained on {state['training_device']} and resumes on "
            f"{rng.device.type}: its random stream cannot carry over, so the run will not "
            "repeat an uninterrupted one exactly",
            UserWarning,
            stacklevel=4,
        )
        return
    rng.set_state(state["training"])


def _numpy_state() -> dict[str, Any]:
    name, keys, pos, has_gauss, cached = np.random.get_state(legacy=True)  # noqa: NPY002
    return {
        "bit_generator": str(name),
        "keys": torch.from_numpy(keys.astype(np.int64)),
        "pos": int(pos),
        "has_gauss": int(has_gauss),
        "cached_gaussian": float(cached),
    }
