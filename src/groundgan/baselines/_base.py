"""What the statistical baselines share: setup, per-label fitting, sampling, save/load.

A subclass fits one model per group of cells (one group, or one per label of ``labels_key``)
by implementing :meth:`_StatisticalBaseline._fit_group` and
:meth:`_StatisticalBaseline._sample_group`; everything that touches AnnData lives here.
"""

from __future__ import annotations

import io
import json
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pandas as pd
import scipy.sparse as sp
from anndata import AnnData

from .._files import check_same_genes, check_save_dir
from .._seeds import check_seed, resolve_seed
from .._validation import (
    InvalidInputError,
    check_finite_nonnegative,
    check_positive_int,
    check_raw_counts,
    check_unique,
    format_names,
    matrix_of,
    to_dense,
)
from .._version import __version__
from ..model._base import (
    Simulator,
    resolve_library_size,
    verify_model_files,
    write_model_files,
)

#: Cells sampled when neither ``n_cells`` nor ``labels`` are given.
DEFAULT_N_CELLS = 1000
#: Rounds of redrawing cells whose sampled counts are all zero.
MAX_REDRAWS = 100

_META_FILE, _PARAMS_FILE, _GENES_FILE = "model.json", "params.npz", "var_names.txt"


class NotTrainedError(InvalidInputError):
    """The model has to be trained (or loaded trained) first."""


class _StatisticalBaseline(Simulator):
    """Base class of the statistical simulators (not public; see ScDesign2 and SPARSim)."""

    #: One line naming the model for ``repr`` and the docs.
    _description: ClassVar[str] = ""

    # ------------------------------------------------------------------------- setup
    @classmethod
    def setup_anndata(
        cls, adata: AnnData, labels_key: str | None = None, layer: str | None = None
    ) -> None:
        """Validate ``adata`` and record where the counts (and labels) live.

        The counts are ``layers[layer]``; with ``layer=None``, ``layers["counts"]`` when present
        (raw counts, as written by ``gg.pp.preprocess``), otherwise ``X`` rounded to integers;
        ``layer="X"`` forces ``X`` rounded to integers (what the paper fitted scDesign2 on). A
        named layer must hold raw integer counts. Nothing is written when a check fails.

        Parameters
        ----------
        adata
            Cells x genes.
        labels_key
            Column of ``adata.obs`` with cell labels (clusters, cell types): one model per label
            and conditional sampling. ``None``: one model for all cells.
        layer
            Layer with raw counts, ``"X"`` for ``X`` (rounded), or ``None`` (see above).

        Writes ``adata.uns["groundgan_setup_<model name>"]``.
        """
        if not isinstance(adata, AnnData):
            raise InvalidInputError(f"adata must be an AnnData, got {type(adata).__name__}")
        if adata.n_obs < 2 or adata.n_vars < 1:
            raise InvalidInputError(
                f"adata needs at least 2 cells and 1 gene, got {adata.n_obs} x {adata.n_vars}"
            )
        check_unique(list(map(str, adata.var_names)), "var_names")
        if layer is None and "counts" in adata.layers:
            layer = "counts"
        elif layer == "X":
            layer = None
        X = matrix_of(adata, layer)
        if layer is None:
            check_finite_nonnegative(X, "adata.X")
            integer = _is_integer_valued(X)
            source = "X (integer counts)" if integer else "X rounded to integers"
        else:
            check_raw_counts(X, f"adata.layers[{layer!r}]")
            source = f"layers[{layer!r}] (raw counts)"
        if labels_key is not None:
            _check_labels(adata, labels_key)
        adata.uns[cls.setup_key()] = setup_record(layer, labels_key, count_source=source)

    # ------------------------------------------------------------------------- init
    def __init__(self, adata: AnnData, library_size: float | None = None, **init_params: Any):
        if not isinstance(adata, AnnData):
            raise InvalidInputError(f"adata must be an AnnData, got {type(adata).__name__}")
        if not self.is_set_up(adata):
            raise InvalidInputError(
                f"adata was not set up for {type(self).__name__}: call "
                f"gg.baselines.{type(self).__name__}.setup_anndata(adata) first"
            )
        record = dict(self.setup_record_of(adata))
        labels_key = record.get("labels_key")
        if labels_key is not None:
            _check_labels(adata, labels_key)
        self.adata: AnnData | None = adata
        self.layer: str | None = record.get("layer")
        self.labels_key: str | None = labels_key
        self.count_source: str = str(record["count_source"])
        self.library_size = resolve_library_size(adata, None, library_size)
        self.var_names = pd.Index(list(map(str, adata.var_names)))
        self.init_params_: dict[str, Any] = dict(init_params)
        self.n_cells_train_ = int(adata.n_obs)
        self.groups_: list[str] = []
        self.group_sizes_: list[int] = []
        self.params_: list[dict[str, np.ndarray]] = []
        self.train_seed_: int | None = None

    @property
    def is_trained_(self) -> bool:
        return bool(self.params_)

    @property
    def is_conditional(self) -> bool:
        return self.labels_key is not None

    # ------------------------------------------------------------------------- training
    def train(self, seed: int = 0) -> None:
        """Fit the model: one set of parameters per label (or one for all cells).

        Parameters
        ----------
        seed
            Seeds the randomness of fitting (e.g. randomised probability integral transform).
        """
        if self.adata is None:
            raise InvalidInputError(
                "no training data: this model was loaded without adata; pass adata to load()"
            )
        seed = check_seed(seed)
        adata = self.adata
        check_same_genes(adata, list(self.var_names))
        matrix = matrix_of(adata, self.layer)
        check_finite_nonnegative(matrix, "training data")
        labels = self._training_labels(adata)
        rng = np.random.default_rng(seed)
        groups, sizes, params = [], [], []
        for group, rows in labels.items():
            counts = np.rint(to_dense(matrix[rows])).astype(np.float64)
            if counts.sum() == 0:
                raise InvalidInputError(
                    f"cells of {self._group_name(group)} have no counts at all; drop them first"
                )
            groups.append(group)
            sizes.append(len(rows))
            params.append(self._fit_group(counts, rng))
        self.groups_, self.group_sizes_, self.params_ = groups, sizes, params
        self.n_cells_train_ = int(adata.n_obs)
        self.train_seed_ = int(seed)

    def _training_labels(self, adata: AnnData) -> dict[str, np.ndarray]:
        """Row indices per group (one group ``"all"`` without labels), in category order."""
        if self.labels_key is None:
            return {"all": np.arange(adata.n_obs)}
        _check_labels(adata, self.labels_key)
        labels = adata.obs[self.labels_key]
        order = _label_order(labels)
        values = labels.astype(str).to_numpy()
        return {g: np.flatnonzero(values == g) for g in order if (values == g).any()}

    def _group_name(self, group: str) -> str:
        return "all cells" if self.labels_key is None else f"label {group!r}"

    def _fit_group(self, counts: np.ndarray, rng: np.random.Generator) -> dict[str, np.ndarray]:
        """Fit one group's parameters from its counts (cells x genes, integers as float)."""
        raise NotImplementedError

    def _sample_group(
        self, params: dict[str, np.ndarray], n_cells: int, rng: np.random.Generator
    ) -> np.ndarray:
        """Draw ``n_cells`` count vectors (cells x genes) from one group's parameters."""
        raise NotImplementedError

    def _expected_counts(self, params: dict[str, np.ndarray]) -> np.ndarray:
        """Expected count per gene under one group's parameters."""
        raise NotImplementedError

    # ------------------------------------------------------------------------- sampling
    def sample(
        self,
        n_cells: int | None = None,
        seed: int | None = 0,
        labels: Mapping[str, int] | None = None,
    ) -> AnnData:
        """Simulate cells.

        Parameters
        ----------
        n_cells
            Number of cells; ``None`` means 1000, or the total of ``labels``.
        seed
            Same seed -> identical cells. ``None`` draws one (recorded in ``uns``).
        labels
            Conditional models only: cells per label, e.g. ``{"CD14+ Monocyte": 100}``
            (honoured exactly; labels left out get no cells). ``None``: ``n_cells`` split by the
            training ratios (largest remainder rounding).

        Returns
        -------
        AnnData
            The simulated cells, on the training genes:

            - ``X``: float32 counts normalised per cell to ``library_size``;
            - ``layers["counts"]``: the sampled counts;
            - ``obs["simulated"]`` (``True``) and, for conditional models,
              ``obs[labels_key]`` (cells grouped by label);
            - ``uns["groundgan"]``: model name, version, seed, library size and count source.
        """
        if not self.is_trained_:
            raise NotTrainedError(
                f"{type(self).__name__} is not trained: call model.train() before sample()"
            )
        per_group = cells_per_label(
            n_cells,
            labels,
            self.groups_,
            self.group_sizes_,
            self.labels_key if self.is_conditional else None,
            f"this {type(self).__name__} was set up without labels_key; set it up with "
            "labels_key=... for conditional sampling",
        )
        seed = resolve_seed(seed)
        rng = np.random.default_rng(seed)
        blocks, block_labels = [], []
        for group, params, n in zip(self.groups_, self.params_, per_group, strict=True):
            if n == 0:
                continue
            blocks.append(self._sample_nonempty(params, int(n), rng))
            block_labels += [group] * int(n)
        counts = np.concatenate(blocks, axis=0)
        return self._to_anndata(counts, block_labels, int(seed))

    def _sample_nonempty(self, params, n_cells: int, rng: np.random.Generator) -> np.ndarray:
        """Sample cells, redrawing those whose counts are all zero (they cannot be normalised)."""
        counts = self._sample_group(params, n_cells, rng)
        for _ in range(MAX_REDRAWS):
            empty = np.flatnonzero(counts.sum(axis=1) == 0)
            if empty.size == 0:
                return counts
            counts[empty] = self._sample_group(params, empty.size, rng)
        empty = np.flatnonzero(counts.sum(axis=1) == 0)
        if empty.size:
            warnings.warn(
                f"{empty.size} sampled cells stayed empty after {MAX_REDRAWS} redraws; each "
                "gets one count of the group's most expressed gene",
                RuntimeWarning,
                stacklevel=3,
            )
            counts[empty, int(np.argmax(self._expected_counts(params)))] = 1
        return counts

    def _to_anndata(self, counts: np.ndarray, labels: list[str], seed: int) -> AnnData:
        totals = counts.sum(axis=1, keepdims=True)
        X = counts * (self.library_size / totals)
        categorical = (
            pd.Categorical(labels, categories=self.groups_) if self.is_conditional else None
        )
        sim = simulated_anndata(self, X, categorical, seed, count_source=self.count_source)
        sim.layers["counts"] = counts.astype(np.float32)
        return sim

    # ------------------------------------------------------------------------- persistence
    def save(self, dir_path: str | Path, overwrite: bool = False) -> None:
        """Write the model to a directory: ``model.json``, ``params.npz``, ``var_names.txt``.

        No pickles: arrays are plain ``.npy`` entries of an ``.npz`` file, loaded with
        ``allow_pickle=False``.

        Parameters
        ----------
        dir_path
            The directory; created if needed. It must be empty or absent unless ``overwrite``.
        overwrite
            Also write into a directory that is not empty (its model files are replaced).
        """
        path = Path(dir_path)
        check_save_dir(path, overwrite)  # before anything is serialised
        arrays = {
            f"group{i}__{name}": np.asarray(value)
            for i, params in enumerate(self.params_)
            for name, value in params.items()
        }
        buffer = io.BytesIO()
        np.savez(buffer, **arrays)
        files = {
            _PARAMS_FILE: buffer.getvalue(),
            _GENES_FILE: ("\n".join(self.var_names) + "\n").encode(),
            _META_FILE: json.dumps(self._metadata(), indent=2).encode(),
        }
        write_model_files(path, files, overwrite)

    def _metadata(self) -> dict[str, Any]:
        return self._saved_record(
            self.layer,
            labels_key=self.labels_key,
            count_source=self.count_source,
            n_cells_train=self.n_cells_train_,
            train_seed=self.train_seed_,
            groups=self.groups_,
            group_sizes=self.group_sizes_,
            param_names=[sorted(p) for p in self.params_],
        )

    @classmethod
    def load(cls, dir_path: str | Path, adata: AnnData | None = None):
        """Restore a model written by :meth:`save`; it samples identically.

        Parameters
        ----------
        dir_path
            Directory written by :meth:`save`.
        adata
            Optional data to attach (for further training); its genes must be the model's, in
            the same order. It is set up for this model when it is not yet.
        """
        path = Path(dir_path)
        if not (path / _META_FILE).is_file():
            raise InvalidInputError(f"{str(path)!r} holds no saved model ({_META_FILE} missing)")
        meta = json.loads((path / _META_FILE).read_text(encoding="utf-8"))
        if meta.get("model") != cls.__name__:
            raise InvalidInputError(
                f"{str(path)!r} holds a {meta.get('model')} model, not {cls.__name__}"
            )
        var_names = (path / _GENES_FILE).read_text(encoding="utf-8").splitlines()
        if adata is not None:
            check_same_genes(adata, var_names)
        model = cls.__new__(cls)
        model.adata = adata
        model.layer = meta["layer"]
        model.labels_key = meta["labels_key"]
        model.count_source = meta["count_source"]
        model.library_size = float(meta["library_size"])
        model.var_names = pd.Index(var_names)
        model.init_params_ = dict(meta["init_params"])
        model.n_cells_train_ = int(meta["n_cells_train"])
        model.train_seed_ = meta["train_seed"]
        model.groups_ = list(meta["groups"])
        model.group_sizes_ = [int(n) for n in meta["group_sizes"]]
        with np.load(path / _PARAMS_FILE, allow_pickle=False) as stored:
            model.params_ = [
                {name: stored[f"group{i}__{name}"] for name in names}
                for i, names in enumerate(meta["param_names"])
            ]
        verify_model_files(path)
        if adata is not None and not cls.is_set_up(adata):
            layer = "X" if model.layer is None else model.layer
            cls.setup_anndata(adata, labels_key=model.labels_key, layer=layer)
        return model

    # ------------------------------------------------------------------------- display
    def _summary_lines(self) -> list[str]:
        """Model-specific lines for ``repr`` (trained models only)."""
        return []

    def _parameter_counts(self) -> dict[str, int]:
        """Fitted values per parameter, summed over the groups (labels)."""
        counts: dict[str, int] = {}
        for params in self.params_:
            for name, value in params.items():
                counts[name] = counts.get(name, 0) + int(np.asarray(value).size)
        return counts

    def _repr_lines(self) -> list[str]:
        name = type(self).__name__
        lines = [
            f"{name}: {self._description}",
            f"  genes: {len(self.var_names)}; training cells: {self.n_cells_train_}; "
            f"counts from {self.count_source}",
            f"  sampled cells normalised to library size {self.library_size:g}",
        ]
        if self.is_conditional:
            lines.append(f"  conditional on obs[{self.labels_key!r}]: {len(self.groups_)} labels")
        params = ", ".join(f"{k}={v!r}" for k, v in self.init_params_.items())
        lines.append(f"  parameters: {params}")
        if self.is_trained_:
            lines += ["  trained: yes"] + [f"  {line}" for line in self._summary_lines()]
        else:
            lines.append("  trained: no (call model.train())")
        return lines


# ----------------------------------------------------------------------------- helpers


def cells_per_label(
    n_cells: int | None,
    labels: Mapping[str, int] | None,
    label_names: Sequence[str],
    label_sizes: Sequence[int],
    labels_key: str | None,
    unconditional_hint: str,
) -> np.ndarray:
    """Number of cells to sample per label (one entry for unconditional models).

    ``labels`` is honoured exactly; without it ``n_cells`` (default 1000) is split by the
    training ratios with largest-remainder rounding. ``unconditional_hint`` completes the error
    raised when an unconditional model (``labels_key=None``) is asked for labels.
    """
    if n_cells is not None:
        n_cells = check_positive_int(n_cells, "n_cells")
    if labels is None:
        total = DEFAULT_N_CELLS if n_cells is None else n_cells
        return _largest_remainder(np.asarray(label_sizes, dtype=float), total)
    if labels_key is None:
        raise InvalidInputError(f"labels were requested but {unconditional_hint}")
    if not isinstance(labels, Mapping):
        raise InvalidInputError(
            f"labels must be a dict label -> n_cells, got {type(labels).__name__}"
        )
    requested = {str(k): v for k, v in labels.items()}
    unknown = [k for k in requested if k not in label_names]
    if unknown:
        raise InvalidInputError(
            f"unknown labels in labels: {format_names(unknown)} (labels of {labels_key!r}: "
            f"{format_names(label_names)})"
        )
    for label, count in requested.items():
        if isinstance(count, bool) or not isinstance(count, (int, np.integer)) or count < 0:
            raise InvalidInputError(
                f"labels[{label!r}] must be a non-negative integer, got {count!r}"
            )
    per_label = np.array([int(requested.get(name, 0)) for name in label_names])
    if per_label.sum() == 0:
        raise InvalidInputError("labels asks for 0 cells in total")
    if n_cells is not None and n_cells != per_label.sum():
        raise InvalidInputError(
            f"n_cells={n_cells} differs from the {per_label.sum()} cells asked for in labels; "
            "leave n_cells out"
        )
    return per_label


def setup_record(layer: str | None, labels_key: str | None, **entries: Any) -> dict[str, Any]:
    """What ``setup_anndata`` of a baseline records: ``entries``, then the layer and the
    labels key where given."""
    record = dict(entries)
    if layer is not None:
        record["layer"] = layer
    if labels_key is not None:
        record["labels_key"] = labels_key
    return record


def simulated_anndata(
    model, X: np.ndarray, labels: pd.Categorical | None, seed: int, **record: Any
) -> AnnData:
    """Simulated cells (float32) as AnnData: ``obs["simulated"]``, the label column of a
    conditional ``model``, and ``uns["groundgan"]`` describing the model and run (``record``
    adds model-specific entries)."""
    obs = pd.DataFrame(index=[f"sim_{i}" for i in range(X.shape[0])])
    obs["simulated"] = True
    if labels is not None:
        obs[model.labels_key] = labels
    sim = AnnData(
        X=np.asarray(X, dtype=np.float32), obs=obs, var=pd.DataFrame(index=model.var_names.copy())
    )
    sim.uns["groundgan"] = {
        "model": type(model).__name__,
        "version": __version__,
        "seed": seed,
        "library_size": model.library_size,
        **record,
    }
    if labels is not None:
        sim.uns["groundgan"]["labels_key"] = model.labels_key
    return sim


def _is_integer_valued(X) -> bool:
    values = X.data if sp.issparse(X) else np.asarray(X)
    return bool(np.allclose(values, np.round(values), atol=1e-6)) if values.size else True


def _check_labels(adata: AnnData, labels_key: str) -> None:
    if labels_key not in adata.obs.columns:
        raise InvalidInputError(
            f"labels_key {labels_key!r} not found in adata.obs (columns: "
            f"{format_names(list(adata.obs.columns))})"
        )
    missing = adata.obs[labels_key].isna()
    if missing.any():
        raise InvalidInputError(
            f"adata.obs[{labels_key!r}] has {int(missing.sum())} missing labels"
        )


def _label_order(labels: pd.Series) -> list[str]:
    """Labels in category order (categoricals) or sorted order, as strings."""
    if isinstance(labels.dtype, pd.CategoricalDtype):
        return [str(c) for c in labels.cat.categories]
    return sorted(set(labels.astype(str)))


def _largest_remainder(weights: np.ndarray, total: int) -> np.ndarray:
    """Split ``total`` in proportion to ``weights`` into integers that add up exactly."""
    exact = weights / weights.sum() * total
    counts = np.floor(exact).astype(int)
    short = total - counts.sum()
    order = np.argsort(-(exact - counts), kind="stable")
    counts[order[:short]] += 1
    return counts
