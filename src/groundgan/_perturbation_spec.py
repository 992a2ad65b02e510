"""What a perturbation is: TFs and values, how it is named, checked and tabulated.

One definition for every producer of perturbation MuData (:meth:`groundgan.GroundGAN.perturb`,
:func:`groundgan.tl.linear_propagation`), so their modality names and tables agree.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import mudata
import numpy as np
import pandas as pd

from ._validation import InvalidInputError
from .grn._dag import distances_from

__all__ = [
    "MODES",
    "adopt_pull_on_update",
    "Perturbation",
    "Perturbations",
    "check_mode",
    "check_value",
    "format_value",
    "parse_perturbation_specs",
    "perturbation_table",
    "perturbation_var_columns",
]

#: A perturbation ``{TF: value}`` or a list of them.
Perturbations = Mapping[str, float] | Sequence[Mapping[str, float]]
MODES = ("set", "scale")


@dataclass(frozen=True)
class Perturbation:
    """One perturbation: TF -> value (``mode="set"``) or factor (``mode="scale"``)."""

    values: dict[str, float]
    mode: str

    @property
    def name(self) -> str:
        """Modality name: ``"SPI1=0"``, ``"GATA1=0,TAL1=0"``, ``"SPI1*2"``."""
        sign = "=" if self.mode == "set" else "*"
        return ",".join(f"{g}{sign}{format_value(v)}" for g, v in self.values.items())


def format_value(value: float) -> str:
    """Shortest readable form of ``value`` that reads back as the same float."""
    short = f"{value:g}"
    return short if float(short) == value else repr(value)


def check_mode(mode: str) -> str:
    if mode not in MODES:
        raise InvalidInputError(f"unknown perturbation mode {mode!r}; use 'set' or 'scale'")
    return mode


def parse_perturbation_specs(
    perturbations: Perturbations, mode: str, check_gene: Callable[[object], str]
) -> list[Perturbation]:
    """Validate ``perturbations`` (a dict or a list of dicts) into :class:`Perturbation` s;
    ``check_gene`` returns a gene's name or raises if it cannot be perturbed."""
    mode = check_mode(mode)
    if isinstance(perturbations, Mapping):
        items = [perturbations]
    elif isinstance(perturbations, Sequence) and not isinstance(perturbations, str):
        items = list(perturbations)
    else:
        raise InvalidInputError(
            "perturbations must be a dict {TF: value} or a list of such dicts, got "
            f"{type(perturbations).__name__}"
        )
    if not items:
        raise InvalidInputError("no perturbation given: pass a dict {TF: value} or a list of them")
    parsed, seen = [], set()
    for i, item in enumerate(items):
        if not isinstance(item, Mapping):
            raise InvalidInputError(
                f"perturbation #{i} is a {type(item).__name__}, not a dict {{TF: value}}"
            )
        if not item:
            raise InvalidInputError(f"perturbation #{i} is empty: name at least one TF")
        values = {check_gene(gene): check_value(gene, value, mode) for gene, value in item.items()}
        perturbation = Perturbation(values, mode)
        if perturbation.name in seen:
            raise InvalidInputError(f"perturbation {perturbation.name!r} is given twice")
        seen.add(perturbation.name)
        parsed.append(perturbation)
    return parsed


def check_value(gene: str, value, mode: str) -> float:
    """A finite, non-negative number (an expression value or a factor)."""
    what = "value" if mode == "set" else "factor"
    if isinstance(value, (bool, np.bool_)):
        raise InvalidInputError(f"{what} for {gene!r} must be a number, got {value!r}")
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise InvalidInputError(f"{what} for {gene!r} must be a number, got {value!r}") from None
    if not math.isfinite(number) or number < 0:
        raise InvalidInputError(
            f"{what} for {gene!r} must be finite and >= 0 (expression cannot be negative), "
            f"got {value!r}"
        )
    return number


def perturbation_table(perturbations: Sequence[Perturbation]) -> pd.DataFrame:
    """One row per (modality, gene): ``modality``, ``gene``, ``value``, ``mode``."""
    rows = [
        (p.name, gene, value, p.mode) for p in perturbations for gene, value in p.values.items()
    ]
    return pd.DataFrame(rows, columns=["modality", "gene", "value", "mode"])


def perturbation_var_columns(grn: pd.DataFrame, tfs: Sequence[str], genes) -> dict[str, np.ndarray]:
    """The ``var`` columns of a perturbed modality: ``perturbed_tf``, ``direct_target`` (a
    target of any perturbed TF), ``downstream`` (a descendant at any distance) and
    ``distance`` (the shortest path from the perturbed TFs: 0 for themselves, -1 for genes
    they do not reach)."""
    genes = pd.Index(genes)
    reached = distances_from(zip(grn["tf"], grn["target"], strict=True), tfs)
    distance = np.array([reached.get(g, -1) for g in genes], dtype=np.int64)
    targets = set(grn.loc[grn["tf"].isin(list(tfs)), "target"])
    return {
        "perturbed_tf": genes.isin(list(tfs)),
        "direct_target": genes.isin(list(targets)),
        "downstream": distance > 0,
        "distance": distance,
    }


def adopt_pull_on_update() -> None:
    """Adopt mudata's coming default ``pull_on_update=False`` unless the user has chosen.

    The perturbation MuData is built for it (obs columns are pulled explicitly). With the
    option unset, mudata 0.3 emits a ``FutureWarning`` at every ``update()``, ``copy()``,
    slice and ``write()`` of the result; setting it (globally: mudata has no per-object
    option) silences them. An explicit ``mudata.set_options(pull_on_update=...)`` is kept.
    """
    try:
        from mudata._core.config import OPTIONS
    except ImportError:  # a mudata without the transitional option
        return
    if "pull_on_update" in OPTIONS and OPTIONS["pull_on_update"] is None:
        mudata.set_options(pull_on_update=False)
