"""``setup_anndata``: validate cells and GRN, and record where the data lives in ``adata.uns``."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numpy as np
import pandas as pd
from anndata import AnnData

from .._validation import (
    InvalidInputError,
    check_library_normalized,
    check_unique,
    format_names,
    matrix_of,
)
from ..grn._dag import gene_levels
from ._base import resolve_library_size

SETUP_KEY = "groundgan_setup_GroundGAN"
#: The key earlier versions wrote (still read).
LEGACY_SETUP_KEY = "_groundgan_setup"


@dataclass(frozen=True)
class GRNLayout:
    """The imposed GRN placed on the data's genes.

    ``tfs``: every regulator (in ``var_names`` order); ``targets``: every regulated gene;
    ``roots``: the TFs without a regulator, which the causal controller generates. A TF
    regulated by another TF is in both ``tfs`` and ``targets``; for a bipartite GRN
    ``roots == tfs``. ``regulators[j]``: indices of the regulators of target ``j`` among the
    generators' sources (root ``i`` is ``i``, target ``k`` is ``len(roots) + k``).
    """

    var_names: list[str]
    tfs: list[str]
    targets: list[str]
    grn: pd.DataFrame

    @cached_property
    def _position(self) -> dict[str, int]:
        return {g: i for i, g in enumerate(self.var_names)}

    @cached_property
    def roots(self) -> list[str]:
        regulated = set(self.targets)
        return [g for g in self.tfs if g not in regulated]

    @property
    def tf_index(self) -> list[int]:
        """Positions of every TF (regulator)."""
        return [self._position[g] for g in self.tfs]

    @property
    def root_index(self) -> list[int]:
        """Positions of the root TFs."""
        return [self._position[g] for g in self.roots]

    @property
    def target_index(self) -> list[int]:
        return [self._position[g] for g in self.targets]

    @cached_property
    def regulators(self) -> list[list[int]]:
        source = {g: i for i, g in enumerate(self.roots)}
        source.update((g, len(self.roots) + k) for k, g in enumerate(self.targets))
        by_target = self.grn.groupby("target", sort=False)["tf"].apply(list).to_dict()
        return [sorted(source[t] for t in by_target[g]) for g in self.targets]

    @cached_property
    def levels(self) -> dict[str, int]:
        """Generation level of every gene (roots 0; see :func:`groundgan.grn.levels`)."""
        return gene_levels(zip(self.grn["tf"], self.grn["target"], strict=True))

    @property
    def is_bipartite(self) -> bool:
        return len(self.roots) == len(self.tfs)

    @classmethod
    def from_grn(cls, grn: pd.DataFrame, var_names) -> GRNLayout:
        var_names = list(map(str, var_names))
        in_grn_tfs, in_grn_targets = set(grn["tf"]), set(grn["target"])
        tfs = [g for g in var_names if g in in_grn_tfs]
        targets = [g for g in var_names if g in in_grn_targets]
        return cls(var_names, tfs, targets, grn.reset_index(drop=True))


def infer_library_size(adata: AnnData, X, library_size: float | None, what: str) -> float:
    """The library size by the rule every model shares (:func:`resolve_library_size`), checked
    on every cell of ``X``."""
    if np.asarray(X.sum(axis=1)).size == 0:
        raise InvalidInputError(f"{what} has no cells")
    target = resolve_library_size(adata, X, library_size)
    check_library_normalized(X, target, what)
    return target


def validate_setup(
    adata: AnnData, grn: pd.DataFrame, layer: str | None, library_size: float | None
) -> tuple[GRNLayout, float]:
    """All checks of ``setup_anndata``; raises before anything is written."""
    from .. import grn as grn_module

    if not isinstance(adata, AnnData):
        raise InvalidInputError(f"adata must be an AnnData, got {type(adata).__name__}")
    check_unique(list(adata.var_names), "var_names")
    X = matrix_of(adata, layer)
    what = "adata.X" if layer is None else f"adata.layers[{layer!r}]"
    table = grn_module.validate(grn, adata)
    layout = GRNLayout.from_grn(table, adata.var_names)
    unused = sorted(set(layout.var_names) - set(layout.tfs) - set(layout.targets))
    if unused:
        raise InvalidInputError(
            f"{len(unused)} genes of the data are neither TF nor target in the GRN: "
            f"{format_names(unused)}; restrict the cells to the GRN's genes with "
            "gg.grn.subset(adata, grn)"
        )
    return layout, infer_library_size(adata, X, library_size, what)


def record_setup(adata: AnnData, layout: GRNLayout, layer: str | None, library_size: float) -> None:
    """Write the setup record into ``adata.uns`` (h5ad-serialisable values only)."""
    record = {
        "library_size": library_size,
        "tfs": np.array(layout.tfs, dtype=object),
        "targets": np.array(layout.targets, dtype=object),
        "grn_tf": layout.grn["tf"].to_numpy(dtype=object),
        "grn_target": layout.grn["target"].to_numpy(dtype=object),
        "grn_importance": _importance(layout.grn),
    }
    if layer is not None:
        record["layer"] = layer
    adata.uns.pop(LEGACY_SETUP_KEY, None)
    adata.uns[SETUP_KEY] = record


def read_setup(adata: AnnData) -> tuple[GRNLayout, str | None, float]:
    """Read back what :func:`record_setup` wrote (error if ``setup_anndata`` was not run)."""
    key = next((k for k in (SETUP_KEY, LEGACY_SETUP_KEY) if k in adata.uns), None)
    if key is None:
        raise InvalidInputError(
            "adata was not set up: call gg.GroundGAN.setup_anndata(adata, grn=grn) first"
        )
    rec = adata.uns[key]
    grn = pd.DataFrame(
        {
            "tf": np.asarray(rec["grn_tf"]).astype(str),
            "target": np.asarray(rec["grn_target"]).astype(str),
            "importance": np.asarray(rec["grn_importance"], dtype=float),
        }
    )
    layout = GRNLayout.from_grn(grn, adata.var_names)
    return layout, rec.get("layer"), float(rec["library_size"])


def _importance(grn: pd.DataFrame) -> np.ndarray:
    if "importance" in grn:
        return grn["importance"].to_numpy(dtype=float)
    return np.ones(len(grn))
