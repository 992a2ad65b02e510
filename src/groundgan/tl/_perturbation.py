"""Effects of in-silico perturbations: per gene, control vs perturbed cells."""

from __future__ import annotations

import numpy as np
import pandas as pd
from mudata import MuData

from .._keys import CONTROL_MODALITY, LEGACY_PERTURBATION_KEY, PERTURBATIONS_KEY
from .._perturbation_spec import perturbation_var_columns
from .._validation import InvalidInputError, format_names, to_dense

__all__ = ["perturbation_effect"]

CONTROL = CONTROL_MODALITY
EFFECT_COLUMNS = [
    "perturbation",
    "gene",
    "mean_control",
    "mean_perturbed",
    "log2fc",
    "fraction_changed",
    "is_target",
    "is_perturbed_tf",
    "distance",
]
DISTANCE_COLUMNS = [
    "perturbation",
    "distance",
    "n_genes",
    "n_changed",
    "mean_abs_log2fc",
    "max_abs_log2fc",
    "mean_fraction_changed",
]


def perturbation_keys(mdata: MuData, key: str | None = None) -> list[str]:
    """The perturbation modalities of ``mdata`` (all, or ``key`` after checking it)."""
    if not isinstance(mdata, MuData):
        raise InvalidInputError(
            f"expected the MuData of GroundGAN.perturb, got {type(mdata).__name__}"
        )
    if CONTROL not in mdata.mod:
        raise InvalidInputError(
            f"mdata has no {CONTROL!r} modality (modalities: {format_names(list(mdata.mod))}); "
            "pass the output of GroundGAN.perturb"
        )
    keys = [k for k in mdata.mod if k != CONTROL]
    if not keys:
        raise InvalidInputError("mdata holds no perturbed modality, only the control")
    if key is None:
        return keys
    if key not in keys:
        raise InvalidInputError(f"perturbation {key!r} not found; available: {format_names(keys)}")
    return [key]


def perturbed_tfs(mdata: MuData, key: str) -> list[str]:
    """The TFs perturbed in modality ``key`` (from the perturbation table)."""
    table = mdata.uns.get(PERTURBATIONS_KEY)
    for uns_key in (PERTURBATIONS_KEY, LEGACY_PERTURBATION_KEY):
        if table is None:
            table = mdata.mod[key].uns.get(uns_key)
    if table is None:
        raise InvalidInputError(
            "mdata.uns['groundgan_perturbations'] is missing: pass the output of GroundGAN.perturb"
        )
    table = pd.DataFrame(table)
    return [str(g) for g in table.loc[table["modality"] == key, "gene"]]


def imposed_grn(mdata: MuData) -> pd.DataFrame:
    """The imposed GRN (``tf``, ``target``) stored by :meth:`GroundGAN.perturb`."""
    grn = mdata.uns.get("groundgan_grn")
    if grn is None:
        grn = mdata.mod[CONTROL].uns.get("groundgan_grn")
    if grn is None:
        raise InvalidInputError(
            "the imposed GRN (uns['groundgan_grn']) is missing: pass the output of "
            "GroundGAN.perturb"
        )
    return pd.DataFrame(grn)


def paired_matrices(mdata: MuData, key: str) -> tuple[np.ndarray, np.ndarray]:
    """Control and perturbed values, after checking that rows and genes pair."""
    control, perturbed = mdata.mod[CONTROL], mdata.mod[key]
    if list(control.var_names) != list(perturbed.var_names):
        raise InvalidInputError(f"modality {key!r} has other genes than the control")
    if "cell" in control.obs and "cell" in perturbed.obs:
        if not np.array_equal(control.obs["cell"].to_numpy(), perturbed.obs["cell"].to_numpy()):
            raise InvalidInputError(f"rows of modality {key!r} do not pair with the control")
    elif control.n_obs != perturbed.n_obs:
        raise InvalidInputError(f"modality {key!r} has another number of cells than the control")
    return _values(control), _values(perturbed)


def _values(adata) -> np.ndarray:
    return np.asarray(to_dense(adata.X), dtype=np.float64)


def effect_of(mdata: MuData, key: str, grn: pd.DataFrame, pseudocount: float) -> pd.DataFrame:
    """Per-gene effect table of one perturbation modality."""
    Xc, Xp = paired_matrices(mdata, key)
    tfs = perturbed_tfs(mdata, key)
    genes = mdata.mod[CONTROL].var_names.astype(str)
    roles = perturbation_var_columns(grn, tfs, genes)
    mean_c, mean_p = Xc.mean(axis=0), Xp.mean(axis=0)
    return pd.DataFrame(
        {
            "perturbation": key,
            "gene": genes,
            "mean_control": mean_c,
            "mean_perturbed": mean_p,
            "log2fc": np.log2((mean_p + pseudocount) / (mean_c + pseudocount)),
            "fraction_changed": (Xp != Xc).mean(axis=0),
            "is_target": roles["direct_target"],
            "is_perturbed_tf": roles["perturbed_tf"],
            "distance": roles["distance"],
        }
    )


def by_distance(effect: pd.DataFrame) -> pd.DataFrame:
    """The per-gene effect table summarised per (perturbation, distance)."""
    table = effect.assign(abs_log2fc=effect["log2fc"].abs(), changed=effect["fraction_changed"] > 0)
    summary = table.groupby(["perturbation", "distance"], sort=False).agg(
        n_genes=("gene", "size"),
        n_changed=("changed", "sum"),
        mean_abs_log2fc=("abs_log2fc", "mean"),
        max_abs_log2fc=("abs_log2fc", "max"),
        mean_fraction_changed=("fraction_changed", "mean"),
    )
    summary = summary.reset_index()
    # perturbations in their order; reached distances increasing, genes not reached (-1) last
    position = {name: i for i, name in enumerate(pd.unique(effect["perturbation"]))}
    order = summary.assign(
        _perturbation=summary["perturbation"].map(position),
        _distance=summary["distance"].where(summary["distance"] >= 0, np.iinfo(np.int64).max),
    ).sort_values(["_perturbation", "_distance"], kind="mergesort")
    summary = summary.loc[order.index]
    summary["n_changed"] = summary["n_changed"].astype(np.int64)
    return summary.reset_index(drop=True)[DISTANCE_COLUMNS]


def perturbation_effect(
    mdata: MuData,
    *,
    key: str | None = None,
    pseudocount: float = 1.0,
    by: str = "gene",
) -> pd.DataFrame:
    """Per gene and perturbation: mean expression in control and perturbed cells, log2FC;
    or the same summarised by distance from the perturbed TFs.

    Control and perturbed cells are matched row by row (same noise, same cell), so
    ``fraction_changed`` counts the cells in which the gene's value changed at all: 0 for every
    gene that is not downstream of a perturbed TF (a direct target in a bipartite GRN; in a
    cascade, targets of targets too).

    Parameters
    ----------
    mdata
        Output of :meth:`groundgan.GroundGAN.perturb`.
    key
        One perturbation modality (e.g. ``"SPI1=0"``); all by default.
    pseudocount
        Added to both means before the ratio, in output units (library-size-normalised
        expression, 20,000 per cell by default): ``log2fc = log2((mean_perturbed + pc) /
        (mean_control + pc))``, finite for genes that are zero on one side.
    by
        ``"gene"``: one row per gene; ``"distance"``: one row per distance from the
        perturbed TFs in the imposed GRN.

    Returns
    -------
    pandas.DataFrame
        With ``by="gene"``: long format, one row per (perturbation, gene), genes in the data's
        order; columns ``perturbation``, ``gene``, ``mean_control``, ``mean_perturbed``,
        ``log2fc``, ``fraction_changed``, ``is_target`` (a direct target of a perturbed TF in
        the imposed GRN), ``is_perturbed_tf`` and ``distance`` (the shortest path from the
        perturbed TFs: 0 for themselves, 1 for direct targets, 2 for targets of targets, ...;
        -1 for genes they do not reach).

        With ``by="distance"``: one row per (perturbation, distance), reached distances in
        increasing order and -1 last; columns ``perturbation``, ``distance``, ``n_genes``,
        ``n_changed`` (genes changed in at least one cell), ``mean_abs_log2fc``,
        ``max_abs_log2fc`` and ``mean_fraction_changed``.

    Examples
    --------
    >>> ko = model.perturb({"SPI1": 0.0}, n_cells=1000, seed=0)
    >>> effect = gg.tl.perturbation_effect(ko)
    >>> effect.query("is_target").sort_values("log2fc").head()
    >>> gg.tl.perturbation_effect(ko, by="distance")
    """
    if not np.isfinite(pseudocount) or pseudocount <= 0:
        raise InvalidInputError(f"pseudocount must be a positive number, got {pseudocount!r}")
    if by not in ("gene", "distance"):
        raise InvalidInputError(f'by must be "gene" or "distance", got {by!r}')
    keys = perturbation_keys(mdata, key)
    grn = imposed_grn(mdata)
    tables = [effect_of(mdata, k, grn, float(pseudocount)) for k in keys]
    effect = pd.concat(tables, ignore_index=True)[EFFECT_COLUMNS]
    return effect if by == "gene" else by_distance(effect)
