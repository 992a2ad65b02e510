"""GroundGAN's model directories, and what its training checkpoints must match.

A model directory holds ``model.pt`` (state dicts, loaded with ``weights_only=True``),
``model.json`` (constructor arguments, version, steps), ``var_names.csv``, ``grn.csv`` and
``manifest.json`` (the checksums of the others, written last; see :mod:`._base`).

Checkpoints themselves (files, lock, payload, resume) belong to the training runner
(:mod:`groundgan.train._checkpoints`, :mod:`groundgan.train._runner`); a GroundGAN checkpoint
carries :func:`model_fingerprint`, and resuming refuses one of another model.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd
from anndata import AnnData

from .._devices import resolve_device
from .._files import check_same_genes, check_save_dir, load_module_state, torch_bytes
from .._validation import InvalidInputError
from ._base import checkpoint_fingerprint, verify_model_files, write_model_files
from ._setup import GRNLayout, read_setup

if TYPE_CHECKING:
    from ._protocols import TrainableModel

MODEL_FILES = ("model.pt", "model.json", "var_names.csv", "grn.csv")
RECORD_KEYS = ("model", "init_params", "library_size", "steps")


# model directories -------------------------------------------------------------------------
def save_model(model: TrainableModel, dir_path: Path, overwrite: bool) -> None:
    """Write ``model`` into ``dir_path`` (see the module docstring for the files); during
    training its step counts already include the step just completed."""
    check_save_dir(dir_path, overwrite)  # before anything is serialised
    record = model._state()
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


# training checkpoints ----------------------------------------------------------------------
def model_fingerprint(model: TrainableModel) -> dict[str, Any]:
    """What a checkpoint must match to be resumed into ``model`` (architecture, genes, GRN)."""
    edges = sorted(zip(model.layout.grn["tf"], model.layout.grn["target"], strict=True))
    grn = "\n".join(f"{tf}\t{target}" for tf, target in edges)
    return checkpoint_fingerprint(
        model, model.layout.var_names, grn_sha256=hashlib.sha256(grn.encode()).hexdigest()
    )
