"""What every simulator shares: GroundGAN and each baseline derive from :class:`Simulator`.

The base class owns the conventions a user meets with every model:

- the set-up record in ``adata.uns["groundgan_setup_<class name>"]`` (one key scheme);
- the seed rule (:mod:`groundgan._seeds`) and the library-size rule
  (:func:`resolve_library_size`);
- model directories written file by file atomically, with ``manifest.json`` (SHA-256 and size
  of every file) written last and checked on load, so an interrupted save is refused by name
  instead of loading a mix of two models;
- ``repr`` and :meth:`Simulator.n_parameters`.

Subclasses keep only their hooks: ``_repr_lines`` and ``_parameter_counts``.
"""

from __future__ import annotations

import hashlib
import json
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
from anndata import AnnData

from .._files import atomic_write_bytes, check_save_dir
from .._validation import InvalidInputError, check_positive_int
from .._version import __version__

#: The file that lists a saved model's files with their checksums (written last).
MANIFEST_FILE = "manifest.json"
#: Version of the manifest layout.
MANIFEST_FORMAT = 1
#: ``model.json`` of a directory written with a manifest says so under this key.
MANIFEST_FLAG = "manifest"
#: Where :func:`groundgan.pp.preprocess` records the library size it normalised to.
PREPROCESS_KEY = "groundgan_preprocess"
#: The library size of models fitted to counts when nothing else says one: the paper's (and
#: :func:`groundgan.pp.preprocess`'s) normalisation target.
DEFAULT_LIBRARY_SIZE = 20_000.0


class Simulator:
    """Base class of every groundgan simulator (GroundGAN and the baselines).

    Subclasses describe themselves through :meth:`_repr_lines` and count their parameters in
    :meth:`_parameter_counts`; set-up keys, the save format and ``repr`` are the same for all.
    """

    #: One line naming the model for ``repr`` and the docs.
    _description: ClassVar[str] = ""
    #: Set-up keys written by earlier releases, still read.
    _legacy_setup_keys: ClassVar[tuple[str, ...]] = ()

    @classmethod
    def setup_key(cls) -> str:
        """Key of the set-up record in ``adata.uns``: ``"groundgan_setup_<class name>"``."""
        return f"groundgan_setup_{cls.__name__}"

    @classmethod
    def setup_record_of(cls, adata: AnnData) -> Mapping[str, Any] | None:
        """The set-up record of ``adata`` for this model (also under a legacy key), or ``None``.

        Parameters
        ----------
        adata
            Cells that :meth:`setup_anndata` may have registered.
        """
        for key in (cls.setup_key(), *cls._legacy_setup_keys):
            if key in adata.uns:
                return adata.uns[key]
        return None

    @classmethod
    def is_set_up(cls, adata: AnnData) -> bool:
        """Whether ``setup_anndata`` of this model has run on ``adata``.

        Parameters
        ----------
        adata
            Cells that :meth:`setup_anndata` may have registered.
        """
        return cls.setup_record_of(adata) is not None

    def n_parameters(self) -> dict[str, int]:
        """Number of parameters per part of the model.

        Returns
        -------
        dict of str to int
            One entry per network (GAN models) or per fitted parameter (statistical models).
        """
        return {name: int(n) for name, n in self._parameter_counts().items()}

    def _parameter_counts(self) -> Mapping[str, int]:
        raise NotImplementedError

    def _repr_lines(self) -> list[str]:
        raise NotImplementedError

    def __repr__(self) -> str:
        return "\n".join(self._repr_lines())

    def _saved_record(self, layer: str | None, **specific: Any) -> dict[str, Any]:
        """The ``model.json`` of a saved model: what every model records (class, version,
        constructor arguments, library size, layer), then the model's own entries."""
        return {
            "model": type(self).__name__,
            "version": __version__,
            "init_params": self.init_params_,
            "library_size": self.library_size,
            "layer": layer,
            **specific,
        }


# training cells ------------------------------------------------------------------------------
#: Fewest training cells a GAN model trains on.
MIN_CELLS = 10


def check_enough_cells(n_cells: int) -> None:
    """Refuse to train on fewer than :data:`MIN_CELLS` cells."""
    if n_cells < MIN_CELLS:
        raise InvalidInputError(
            f"too few cells to train: {n_cells} (at least {MIN_CELLS} are needed)"
        )


def batch_size_for(batch_size: int, n_cells: int, *, warn: bool = True) -> int:
    """``batch_size``, shrunk to the number of training cells (with a warning if ``warn``:
    a stage that this call does not train shrinks silently)."""
    batch_size = check_positive_int(batch_size, "batch_size")
    if batch_size > n_cells:
        if not warn:
            return n_cells
        warnings.warn(
            f"batch size {batch_size} exceeds the {n_cells} training cells; using {n_cells}",
            UserWarning,
            stacklevel=3,
        )
        return n_cells
    return batch_size


# training checkpoints -----------------------------------------------------------------------
#: Constructor arguments a checkpoint may be resumed across (no effect on weights or training).
FREE_PARAMS = ("seed", "sample_block_size")


def checkpoint_fingerprint(
    model: Simulator, var_names: Sequence[str], **specific: Any
) -> dict[str, Any]:
    """What a training checkpoint must match to be resumed into ``model``: its class, its
    constructor arguments (but :data:`FREE_PARAMS`), library size and genes, and whatever else
    the model names in ``specific`` (GroundGAN: its GRN; conditional models: their labels)."""
    init_params = json.loads(json.dumps(model.init_params_))
    return {
        "model": type(model).__name__,
        "init_params": {k: v for k, v in init_params.items() if k not in FREE_PARAMS},
        "library_size": float(model.library_size),
        "genes_sha256": hashlib.sha256("\n".join(var_names).encode()).hexdigest(),
        **specific,
    }


# the library-size rule ----------------------------------------------------------------------
def resolve_library_size(adata: AnnData, X, library_size: float | None) -> float:
    """The per-cell total of a model's cells, by one rule for every model.

    ``library_size`` when given; else what :func:`groundgan.pp.preprocess` recorded in
    ``adata.uns["groundgan_preprocess"]``; else, for a model trained on library-size
    normalised cells ``X``, their median total (their common total), and for a model fitted to
    counts (``X=None``) :data:`DEFAULT_LIBRARY_SIZE`, the paper's 20,000.

    Raises
    ------
    InvalidInputError
        A library size that is not a positive finite number, or no cells to take it from.
    """
    if library_size is None:
        library_size = adata.uns.get(PREPROCESS_KEY, {}).get("library_size")
    if library_size is None and X is None:
        library_size = DEFAULT_LIBRARY_SIZE
    if library_size is None:
        totals = np.asarray(X.sum(axis=1)).ravel()
        if totals.size == 0:
            raise InvalidInputError("adata has no cells to take the library size from")
        library_size = float(np.median(totals))
    valid = isinstance(library_size, (int, float, np.number)) and not isinstance(
        library_size, (bool, np.bool_)
    )
    if not valid or not np.isfinite(library_size) or library_size <= 0:
        raise InvalidInputError(
            f"library_size must be a positive number, got {library_size!r}; pass "
            "library_size= the per-cell total the cells were normalised to"
        )
    return float(library_size)


# model directories --------------------------------------------------------------------------
def write_model_files(path: Path, files: Mapping[str, bytes], overwrite: bool) -> None:
    """Write a model directory: each file atomically, then ``manifest.json`` last.

    The old manifest is removed first, so a save interrupted at any point (even by SIGKILL)
    leaves a directory that :func:`verify_model_files` refuses by name; a finished save
    leaves every file matching its manifest. ``model.json`` must be among ``files``; it is
    marked as written with a manifest.
    """
    check_save_dir(path, overwrite)
    record = json.loads(files["model.json"])
    record[MANIFEST_FLAG] = MANIFEST_FILE
    files = {**files, "model.json": json.dumps(record, indent=2).encode()}
    manifest = {
        "format": MANIFEST_FORMAT,
        "groundgan": __version__,
        "files": {
            name: {"sha256": hashlib.sha256(data).hexdigest(), "size": len(data)}
            for name, data in files.items()
        },
    }
    path.mkdir(parents=True, exist_ok=True)
    (path / MANIFEST_FILE).unlink(missing_ok=True)
    for name, data in files.items():
        atomic_write_bytes(path / name, data)
    atomic_write_bytes(path / MANIFEST_FILE, json.dumps(manifest, indent=1).encode())


def verify_model_files(path: Path) -> None:
    """Refuse a model directory whose files do not match its manifest.

    A directory written before manifests existed (its ``model.json`` does not mention one)
    is accepted as it is.

    Raises
    ------
    InvalidInputError
        Naming the file that is missing, truncated or changed, or an interrupted save.
    """
    manifest_path = path / MANIFEST_FILE
    if not manifest_path.is_file():
        record = _read_json(path / "model.json")
        if isinstance(record, dict) and MANIFEST_FLAG in record:
            raise InvalidInputError(
                f"{path} holds an incomplete model: its save was interrupted before "
                f"{MANIFEST_FILE} was written; save the model again"
            )
        return
    manifest = _read_json(manifest_path)
    if not isinstance(manifest, dict) or not isinstance(manifest.get("files"), dict):
        raise InvalidInputError(f"{manifest_path} is unreadable; save the model again")
    for name, entry in manifest["files"].items():
        file = path / name
        if not file.is_file():
            raise InvalidInputError(
                f"{path} is incomplete: {name} is missing; save the model again"
            )
        data = file.read_bytes()
        if len(data) != entry.get("size") or hashlib.sha256(data).hexdigest() != entry.get(
            "sha256"
        ):
            raise InvalidInputError(
                f"{file} does not match {MANIFEST_FILE} (changed, truncated or an interrupted "
                "save); save the model again"
            )


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
