"""GRN benchmark: infer a GRN from simulated cells and compare it with the imposed GRN."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from anndata import AnnData

from .._validation import InvalidInputError, expressed_genes, format_names, matrix_of, to_dense

__all__ = ["GRNBenchmarkResult", "grn_benchmark"]


@dataclass(frozen=True, eq=False)
class GRNBenchmarkResult:
    """Agreement of an inferred GRN with the imposed one (see :func:`grn_benchmark`).

    Attributes
    ----------
    auprc
        Average precision over all TF x target candidate pairs.
    auprc_random
        Its expectation for a random ranking: the edge density
        ``n_edges / n_candidate_pairs`` (self-pairs excluded).
    auprc_ratio
        ``auprc / auprc_random``; 1 = no better than random.
    precision_at_k
        Mean over targets of the precision among a target's top-``k`` inferred TFs, ``k`` its
        in-degree in the imposed GRN.
    precision_at_k_random
        Its expectation for a random ranking: mean of ``k / n_candidate_TFs``.
    per_target
        One row per target: ``is_tf`` (the target is itself a TF of the imposed GRN: a
        regulated TF of a cascade), ``in_degree``, ``n_candidates``, ``precision_at_k``,
        ``precision_at_k_random``, ``auprc`` (average precision over that target's TFs).
    by_edge_kind
        The candidate pairs split by the kind of their target, one row each for
        ``"TF -> TF"`` (targets that are TFs of the imposed GRN) and ``"TF -> target"``
        (the others): ``n_candidates``, ``n_edges``, ``auprc``, ``auprc_random``,
        ``auprc_ratio``. Each kind is ranked on its own; a kind without candidates or without
        imposed edges has NaN figures (a bipartite GRN has no ``"TF -> TF"`` candidates).
    curve
        The precision-recall curve over all candidate pairs: ``precision``, ``recall``,
        ``threshold`` (NaN on the last point).
    method
        The inference method's name.
    n_tfs
        Number of TFs of the imposed GRN.
    n_targets
        Number of targets of the imposed GRN.
    n_edges
        Number of edges of the imposed GRN.
    """

    auprc: float
    auprc_random: float
    auprc_ratio: float
    precision_at_k: float
    precision_at_k_random: float
    per_target: pd.DataFrame = field(repr=False)
    curve: pd.DataFrame = field(repr=False)
    by_edge_kind: pd.DataFrame = field(repr=False)
    method: str = "unknown"
    n_tfs: int = 0
    n_targets: int = 0
    n_edges: int = 0

    def to_series(self) -> pd.Series:
        """The scalar figures as a :class:`pandas.Series` named after the method."""
        tables = ("per_target", "curve", "by_edge_kind")
        values = {k: v for k, v in asdict(self).items() if k not in tables}
        name = values.pop("method")
        return pd.Series(values, name=name, dtype=np.float64)

    def __repr__(self) -> str:
        return (
            f"GRNBenchmarkResult(method={self.method!r}: {self.n_edges} imposed edges, "
            f"{self.n_tfs} TFs x {self.n_targets} targets)\n"
            f"    AUPRC          {self.auprc:.4f}  (random {self.auprc_random:.4f}, "
            f"ratio {self.auprc_ratio:.2f})\n"
            f"    precision@k    {self.precision_at_k:.4f}  "
            f"(random {self.precision_at_k_random:.4f})" + self._edge_kind_lines()
        )

    def _edge_kind_lines(self) -> str:
        """AUPRC per edge kind, shown when the imposed GRN has TF -> TF edges."""
        if not self.by_edge_kind["n_edges"].get(TF_TO_TF, 0):
            return ""
        return "".join(
            f"\n    AUPRC {kind:<12} {row.auprc:.4f}  (random {row.auprc_random:.4f}, "
            f"{int(row.n_edges)} edges)"
            for kind, row in self.by_edge_kind.iterrows()
        )


#: Edge kinds of :attr:`GRNBenchmarkResult.by_edge_kind`, by the kind of the target.
TF_TO_TF = "TF -> TF"
TF_TO_TARGET = "TF -> target"


# --------------------------------------------------------------------------------------------
# inputs
# --------------------------------------------------------------------------------------------


def _imposed_edges(grn: pd.DataFrame, var_names: pd.Index) -> pd.DataFrame:
    if not isinstance(grn, pd.DataFrame) or not {"tf", "target"} <= set(grn.columns):
        raise InvalidInputError("grn must be a DataFrame with columns 'tf' and 'target'")
    edges = grn[["tf", "target"]].astype(str).drop_duplicates().reset_index(drop=True)
    if edges.empty:
        raise InvalidInputError("the imposed GRN has no edges")
    self_loops = edges["tf"] == edges["target"]
    if self_loops.any():
        raise InvalidInputError(
            f"the imposed GRN has self-loops: {format_names(edges.loc[self_loops, 'tf'])}"
        )
    genes = pd.unique(pd.concat([edges["tf"], edges["target"]]))
    missing = [g for g in genes if g not in var_names]
    if missing:
        raise InvalidInputError(
            f"genes of the imposed GRN not found in sim.var_names: {format_names(missing)}"
        )
    return edges


def _method_name(method: Any) -> str:
    if isinstance(method, str):
        return method
    if isinstance(method, pd.DataFrame):
        return "precomputed"
    return getattr(method, "__name__", type(method).__name__)


def _infer(
    sim: AnnData,
    tfs: list[str],
    targets: list[str],
    method: str | Callable[..., pd.DataFrame] | pd.DataFrame,
    seed: int,
    layer: str | None,
    kwargs: dict[str, Any],
) -> pd.DataFrame:
    """The inferred table (tf, target, importance) by name, callable or as given."""
    if isinstance(method, pd.DataFrame):
        if kwargs:
            raise InvalidInputError(
                f"keyword arguments {sorted(kwargs)} are not used with a precomputed table"
            )
        return method
    if isinstance(method, str):
        from ..grn import importance_table  # lazy: GRN inference pulls in arboreto/dask

        # a gene that is zero in every simulated cell cannot be scored: its pairs keep 0
        genes = map(str, sim.var_names)
        expressed = dict(zip(genes, expressed_genes(matrix_of(sim, layer)), strict=True))
        scored_tfs = [t for t in tfs if expressed[t]]
        scored_targets = [t for t in targets if expressed[t]]
        if not scored_tfs or not scored_targets:
            return pd.DataFrame({"tf": [], "target": [], "importance": []})
        return importance_table(
            sim, scored_tfs, method=method, targets=scored_targets, seed=seed, layer=layer, **kwargs
        )
    if callable(method):
        X = to_dense(matrix_of(sim, layer)).astype(np.float64)
        return method(X, list(map(str, sim.var_names)), tfs, targets, seed, **kwargs)
    raise InvalidInputError(
        f"method must be a method name, a callable or a DataFrame, got {type(method).__name__}"
    )


def _candidate_scores(
    inferred: pd.DataFrame, edges: pd.DataFrame, tfs: list[str], targets: list[str]
) -> pd.DataFrame:
    """All TF x target pairs (tf != target) with ``label`` (imposed edge) and ``score``."""
    if not isinstance(inferred, pd.DataFrame) or not {"tf", "target", "importance"} <= set(
        inferred.columns
    ):
        raise InvalidInputError(
            "the inferred GRN must be a DataFrame with columns 'tf', 'target', 'importance'"
        )
    table = inferred[["tf", "target", "importance"]].copy()
    table["tf"] = table["tf"].astype(str)
    table["target"] = table["target"].astype(str)
    table["importance"] = pd.to_numeric(table["importance"], errors="coerce").astype(np.float64)
    table = table[table["tf"].isin(tfs) & table["target"].isin(targets)]
    table = table[table["tf"] != table["target"]]
    values = table["importance"].to_numpy()
    if not np.isfinite(values).all():
        raise InvalidInputError("the inferred GRN has missing, NaN or infinite importances")
    if (values < 0).any():
        raise InvalidInputError(
            "the inferred GRN has negative importances: importances must be >= 0 "
            "(use absolute values of signed scores)"
        )
    # duplicated pairs: keep the largest importance
    table = table.groupby(["tf", "target"], sort=False, as_index=False)["importance"].max()
    pairs = pd.DataFrame(
        {
            "tf": np.repeat(np.asarray(tfs, dtype=object), len(targets)),
            "target": np.tile(np.asarray(targets, dtype=object), len(tfs)),
        }
    )
    pairs = pairs[pairs["tf"] != pairs["target"]]
    pairs = pairs.merge(table, on=["tf", "target"], how="left")
    pairs["score"] = pairs.pop("importance").fillna(0.0)
    truth = pd.MultiIndex.from_frame(edges[["tf", "target"]])
    pairs["label"] = pd.MultiIndex.from_frame(pairs[["tf", "target"]]).isin(truth)
    return pairs.reset_index(drop=True)


# --------------------------------------------------------------------------------------------
# figures
# --------------------------------------------------------------------------------------------


def _expected_precision_at_k(scores: np.ndarray, labels: np.ndarray, k: int) -> float:
    """Precision among the top ``k`` scores, ties at the cut-off shared in expectation.

    Pairs strictly above the ``k``-th score are all counted; the tied group at the cut-off
    contributes ``(slots left) x (fraction of true edges in the group)``: the mean over every
    order of the tied pairs, so the figure is deterministic and favours no pair.
    """
    if k <= 0:
        return float("nan")
    kth = np.sort(scores)[::-1][min(k, scores.size) - 1]
    above = scores > kth
    tied = scores == kth
    slots = k - int(above.sum())
    hits = labels[above].sum() + slots * labels[tied].mean()
    return float(hits / k)


def _per_target(pairs: pd.DataFrame, targets: list[str], tfs: set[str]) -> pd.DataFrame:
    from sklearn.metrics import average_precision_score

    rows = []
    for target, group in pairs.groupby("target", sort=False):
        labels = group["label"].to_numpy(bool)
        scores = group["score"].to_numpy(np.float64)
        k = int(labels.sum())
        rows.append(
            {
                "target": target,
                "is_tf": target in tfs,
                "in_degree": k,
                "n_candidates": labels.size,
                "precision_at_k": _expected_precision_at_k(scores, labels, k),
                "precision_at_k_random": k / labels.size,
                "auprc": float(average_precision_score(labels, scores)) if k else np.nan,
            }
        )
    table = pd.DataFrame(rows).set_index("target")
    return table.loc[[t for t in targets if t in table.index]]


def grn_benchmark(
    sim: AnnData,
    grn: pd.DataFrame,
    *,
    method: str | Callable[..., pd.DataFrame] | pd.DataFrame = "grnboost2",
    seed: int = 0,
    layer: str | None = None,
    **kwargs: Any,
) -> GRNBenchmarkResult:
    """Infer a GRN from (simulated) cells and score it against the imposed GRN.

    The imposed GRN's TFs and targets define the candidate pairs: every TF x target pair with
    ``tf != target``. A GRN is inferred from ``sim`` restricted to those TFs and targets, and
    each candidate pair gets its inferred importance; pairs the inferred table lacks get 0
    (ranked last, tied). Direction and sign are ignored, as in the paper.

    - **AUPRC** is scikit-learn's :func:`~sklearn.metrics.average_precision_score`: the step-wise
      estimator ``AP = sum_n (R_n - R_{n-1}) P_n`` over the distinct score thresholds (no
      trapezoidal interpolation; tied scores enter as one threshold, so ties are handled
      deterministically). Random baseline: the edge density ``n_edges / n_candidate_pairs``.
    - **precision@k**: for each target with in-degree ``k``, the fraction of imposed regulators
      among its ``k`` highest-scoring TFs (ties at the cut-off count with their expected value
      over all orders); averaged over targets. Random baseline: mean ``k / n_candidate_TFs``.

    Parameters
    ----------
    sim
        Cells to infer the GRN from (usually ``model.sample(...)``), with the GRN's genes in
        ``var_names``.
    grn
        The imposed GRN: a DataFrame with columns ``tf`` and ``target`` (other columns ignored).
    method
        A method name passed to :func:`groundgan.grn.importance_table` (``"grnboost2"``,
        ``"genie3"``, ``"pearson"``, ``"spearman"``, ``"partial_correlation"``, ``"pidc"``), a
        callable with the signature of :data:`groundgan.grn.METHODS` entries
        (``f(X, gene_names, tfs, targets, seed, **kwargs)``, ``X`` the dense matrix of ``sim``),
        or an already inferred DataFrame with columns ``tf``, ``target``, ``importance``.
    seed
        Random seed of the inference.
    layer
        Layer of ``sim`` to use instead of ``X``.
    **kwargs
        Passed to the inference (e.g. ``client=`` or ``progress=False`` for arboreto methods).

    Returns
    -------
    GRNBenchmarkResult
        The scores; ``print`` it for a summary, ``.to_series()`` for a table row.

    Examples
    --------
    >>> import numpy as np, pandas as pd, anndata as ad
    >>> import groundgan as gg
    >>> rng = np.random.default_rng(0)
    >>> tf = rng.gamma(2.0, size=(300, 2)); y = tf[:, :1] * 3 + rng.gamma(1.0, size=(300, 1))
    >>> sim = ad.AnnData(np.c_[tf, y, rng.gamma(1.0, size=(300, 1))])
    >>> sim.var_names = ["A", "B", "y", "z"]
    >>> grn = pd.DataFrame({"tf": ["A", "B"], "target": ["y", "z"]})
    >>> res = gg.tl.grn_benchmark(sim, grn, method="pearson")
    >>> res.precision_at_k >= 0.5
    True
    """
    edges = _imposed_edges(grn, sim.var_names)
    tfs = list(pd.unique(edges["tf"]))
    targets = list(pd.unique(edges["target"]))
    inferred = _infer(sim, tfs, targets, method, seed, layer, kwargs)
    pairs = _candidate_scores(inferred, edges, tfs, targets)
    return _summarize(pairs, targets, _method_name(method), len(tfs), len(edges))


def _by_edge_kind(pairs: pd.DataFrame, tfs: set[str]) -> pd.DataFrame:
    """AUPRC of the TF -> TF and the TF -> target candidate pairs, each ranked on its own."""
    from sklearn.metrics import average_precision_score

    to_tf = pairs["target"].isin(tfs).to_numpy()
    rows = {}
    for kind, mask in ((TF_TO_TF, to_tf), (TF_TO_TARGET, ~to_tf)):
        labels = pairs["label"].to_numpy(bool)[mask]
        scores = pairs["score"].to_numpy(np.float64)[mask]
        n_edges = int(labels.sum())
        auprc = float(average_precision_score(labels, scores)) if n_edges else np.nan
        density = n_edges / labels.size if n_edges else np.nan
        rows[kind] = {
            "n_candidates": int(labels.size),
            "n_edges": n_edges,
            "auprc": auprc,
            "auprc_random": density,
            "auprc_ratio": auprc / density if n_edges else np.nan,
        }
    table = pd.DataFrame.from_dict(rows, orient="index")
    table.index.name = "edge_kind"
    return table


def _summarize(
    pairs: pd.DataFrame, targets: list[str], method: str, n_tfs: int, n_edges: int
) -> GRNBenchmarkResult:
    from sklearn.metrics import average_precision_score, precision_recall_curve

    labels = pairs["label"].to_numpy(bool)
    scores = pairs["score"].to_numpy(np.float64)
    auprc = float(average_precision_score(labels, scores))
    density = float(labels.mean())
    precision, recall, thresholds = precision_recall_curve(labels, scores)
    curve = pd.DataFrame(
        {
            "precision": precision,
            "recall": recall,
            "threshold": np.append(thresholds, np.nan),
        }
    )
    tfs = set(pairs["tf"])
    per_target = _per_target(pairs, targets, tfs)
    return GRNBenchmarkResult(
        auprc=auprc,
        auprc_random=density,
        auprc_ratio=auprc / density,
        precision_at_k=float(per_target["precision_at_k"].mean()),
        precision_at_k_random=float(per_target["precision_at_k_random"].mean()),
        per_target=per_target,
        curve=curve,
        by_edge_kind=_by_edge_kind(pairs, tfs),
        method=method,
        n_tfs=n_tfs,
        n_targets=len(targets),
        n_edges=n_edges,
    )
