"""Effects of in-silico perturbations: per gene, control vs perturbed cells."""

from __future__ import annotations

import numpy as np
import pandas as pd
from mudata import MuData

from .._keys import CONTROL_MODALITY, LEGACY_PERTURBATION_KEY, PERTURBATIONS_KEY
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
    targets = set(grn.loc[grn["tf"].isin(tfs), "target"])
    genes = mdata.mod[CONTROL].var_names.astype(str)
    mean_c, mean_p = Xc.mean(axis=0), Xp.mean(axis=0)
    return pd.DataFrame(
        {
            "perturbation": key,
            "gene": genes,
            "mean_control": mean_c,
            "mean_perturbed": mean_p,
            "log2fc": np.log2((mean_p + pseudocount) / (mean_c + pseudocount)),
            "fraction_changed": (Xp != Xc).mean(axis=0),
            "is_target": genes.isin(list(targets)),
            "is_perturbed_tf": genes.isin(tfs),
        }
    )


def perturbation_effect(
    mdata: MuData, *, key: str | None = None, pseudocount: float = 1.0
) -> pd.DataFrame:
    """Per gene and perturbation: mean expression in control and perturbed cells, log2FC.

    Control and perturbed cells are matched row by row (same noise, same cell), so
    ``fraction_changed`` counts the cells in which the gene's value changed at all: 0 for every
    gene that is not a direct target of a perturbed TF.

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

    Returns
    -------
    pandas.DataFrame
        Long format, one row per (perturbation, gene), genes in the data's order; columns
        ``perturbation``, ``gene``, ``mean_control``, ``mean_perturbed``, ``log2fc``,
        ``fraction_changed``, ``is_target`` (a direct target of a perturbed TF in the
        imposed GRN) and ``is_perturbed_tf``.

    Examples
    --------
    >>> ko = model.perturb({"SPI1": 0.0}, n_cells=1000, seed=0)
    >>> effect = gg.tl.perturbation_effect(ko)
    >>> effect.query("is_target").sort_values("log2fc").head()
    """
    if not np.isfinite(pseudocount) or pseudocount <= 0:
        raise InvalidInputError(f"pseudocount must be a positive number, got {pseudocount!r}")
    keys = perturbation_keys(mdata, key)
    grn = imposed_grn(mdata)
    tables = [effect_of(mdata, k, grn, float(pseudocount)) for k in keys]
    return pd.concat(tables, ignore_index=True)[EFFECT_COLUMNS]
