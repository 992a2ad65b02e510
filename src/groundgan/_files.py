"""Safe model files, shared by GroundGAN, the baselines and the training runner.

Atomic writes of files and of whole directories (a crash leaves the old one or the new one,
never half of one), pickle-free loading of torch files, and the checks every model's
``save``/``load`` makes: where it may write, and whether an AnnData has the saved model's
genes. Imports neither anndata nor pandas, so that :mod:`groundgan.train` may use it.
"""

from __future__ import annotations

import io
import os
import re
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from ._errors import InvalidInputError

if TYPE_CHECKING:
    from anndata import AnnData


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` via a temporary file, fsync and ``os.replace``.

    A crash at any point leaves ``path`` either as it was or complete; never partly written.
    """
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    fsync_path(path.parent)


def fsync_path(path: Path) -> None:
    """Flush a file, or a directory (which makes a rename inside it durable), to disk."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def torch_bytes(obj: Any) -> bytes:
    """``torch.save`` into memory."""
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    return buffer.getvalue()


def load_weights(source: Path | bytes, what: str | Path, device: str | torch.device = "cpu") -> Any:
    """``torch.load`` with ``weights_only=True``: tensors and plain values only.

    A file holding other pickled objects (a planted pickle) is refused with
    :class:`~groundgan._validation.InvalidInputError`; its code is never executed.

    Parameters
    ----------
    source
        A file, or its bytes (already checksummed).
    what
        How to name the file in error messages.
    device
        Where to map the tensors.
    """
    data = source.read_bytes() if isinstance(source, Path) else source
    try:
        return torch.load(io.BytesIO(data), map_location=device, weights_only=True)
    except Exception as err:  # UnpicklingError (planted objects, garbage), truncated zip, ...
        found = re.search(r"GLOBAL (\S+)", str(err))
        detail = f"it asks to run {found.group(1)}" if found else type(err).__name__
        raise InvalidInputError(
            f"refused to load {what}: not a plain weights file ({detail}); only tensors and plain "
            "values are loaded and nothing in the file was run; it is corrupted, truncated or "
            "was not written by groundgan"
        ) from err


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


def check_save_dir(path: Path, overwrite: bool) -> None:
    """Refuse to save a model into a file, or into a non-empty directory without ``overwrite``."""
    if path.exists() and not path.is_dir():
        raise InvalidInputError(f"cannot save the model to {path}: it is a file, not a directory")
    if path.exists() and any(path.iterdir()) and not overwrite:
        raise InvalidInputError(
            f"{path} exists and is not empty; pass overwrite=True to replace it"
        )


def check_same_genes(adata: AnnData, var_names: list[str]) -> None:
    """Refuse an AnnData whose genes are not the model's, in the same order."""
    from anndata import AnnData

    from ._validation import format_names

    if not isinstance(adata, AnnData):
        raise InvalidInputError(f"adata must be an AnnData, got {type(adata).__name__}")
    genes = list(map(str, adata.var_names))
    if genes == var_names:
        return
    in_data, in_model = set(genes), set(var_names)
    missing = [g for g in var_names if g not in in_data]
    extra = [g for g in genes if g not in in_model]
    detail = []
    if missing:
        detail.append(f"missing from adata: {format_names(missing)}")
    if extra:
        detail.append(f"not in the model: {format_names(extra)}")
    if not detail:
        detail.append("same genes in another order; put adata's genes in the model's order")
    raise InvalidInputError(
        f"adata's genes differ from the model's {len(var_names)} genes: " + "; ".join(detail)
    )


def load_module_state(module: nn.Module, path: Path, described_by: str) -> None:
    """Load the weights file ``path`` into ``module``, naming a mismatch with ``described_by``
    (the file that says which model this is)."""
    state = load_weights(path, path)
    try:
        module.load_state_dict(state)
    except (RuntimeError, TypeError, AttributeError) as err:
        raise InvalidInputError(
            f"{path} does not hold the weights of the model described by {described_by} "
            f"({str(err).splitlines()[0]})"
        ) from err
