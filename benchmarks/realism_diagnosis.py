"""What separates a trained model's cells from held-out real cells (``learning_curve.py diagnose``).

The paper's RF AUROC (a forest on 50 principal components) says *how well* simulated cells are
told from real ones, not *by what*. This diagnosis compares the simulated cells and the
real-vs-real control half B with half A, on the data and split of ``learning_curve.py run``:

- sparsity: nonzero genes per cell, and the smallest nonzero values. In library-size
  normalised cells a nonzero value is at least ``library size / the cell's counts``, so real
  cells have no small positive values; a generator's ReLU outputs can;
- spread: per-gene standard deviations and per-component standard deviations (on the joint
  principal components) of the simulated cells relative to half A (1 = as spread as the real
  cells; below 1, the cells are too alike);
- three forests (5-fold cross-validated AUROC, 0.5 = indistinguishable): on the 50 principal
  components (as the paper's metric, cross-validated instead of one split), on the genes
  themselves, and on per-cell summaries (nonzero genes, the largest values, the smallest
  nonzero value);
- the paper's RF AUROC itself (``gg.tl.evaluate``'s: one split, 1,000 trees) for
  ``--metric-seeds`` seeds of its split, components and forest, mean and standard deviation:
  how much one figure of a learning curve moves with the metric's own seed.

With ``--counts`` the simulated cells are also diagnosed after rounding each one to integer
counts (:func:`round_to_counts`: a depth drawn from the training cells' totals, unbiased
stochastic rounding, normalised back), which gives them the zeros and the value grid of real
normalised cells without adding sampling noise to what the generator already learned.

Run::

    GROUNDGAN_DATA_DIR=../shared/data python benchmarks/learning_curve.py diagnose \\
        --data mouse --genes 200 --model model_dir/ --json diagnosis.json
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
from learning_curve import halves, prepare, simulate

#: Principal components of the forest on components (the paper's metric's).
N_PCS = 50
#: Largest values per cell among the per-cell summaries.
N_LARGEST = 5


def cell_summaries(X: np.ndarray) -> np.ndarray:
    """Per cell: nonzero genes, its largest values, its smallest nonzero value (0 if none)."""
    nonzero = X > 0
    smallest = np.where(nonzero, X, np.inf).min(axis=1)
    smallest[~np.isfinite(smallest)] = 0.0
    largest = np.sort(X, axis=1)[:, -N_LARGEST:]
    return np.column_stack([nonzero.sum(axis=1), largest, smallest])


def forest_auroc(a: np.ndarray, b: np.ndarray, seed: int, trees: int, threads: int) -> float:
    """5-fold cross-validated AUROC of a random forest telling ``a`` from ``b``."""
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.model_selection import StratifiedKFold, cross_val_score

    X = np.vstack([a, b])
    y = np.r_[np.ones(len(a), dtype=int), np.zeros(len(b), dtype=int)]
    forest = RandomForestClassifier(n_estimators=trees, random_state=seed, n_jobs=threads)
    folds = StratifiedKFold(5, shuffle=True, random_state=seed)
    return float(cross_val_score(forest, X, y, cv=folds, scoring="roc_auc").mean())


def round_to_counts(cells: np.ndarray, depths: np.ndarray, seed: int) -> np.ndarray:
    """Each cell rounded to integer counts and normalised back to its own total.

    A cell's depth (total counts) is drawn from ``depths``; its profile, scaled to that depth,
    is rounded down or up with the probability of its fractional part, so each count keeps
    its expected value. A cell left without counts gets one in its largest gene.
    """
    rng = np.random.default_rng(seed)
    totals = cells.sum(axis=1, keepdims=True)
    scaled = cells / totals * rng.choice(depths, size=(len(cells), 1))
    counts = np.floor(scaled) + (rng.random(cells.shape) < scaled - np.floor(scaled))
    empty = np.flatnonzero(counts.sum(axis=1) == 0)
    counts[empty, scaled[empty].argmax(axis=1)] = 1
    return counts / counts.sum(axis=1, keepdims=True) * totals


def separation(
    cells: np.ndarray, reference: np.ndarray, seed: int, trees: int, threads: int = 1
) -> dict:
    """How ``cells`` differ from ``reference`` (both cells x genes, library-size normalised)."""
    from groundgan.tl._metrics import _check_n_pcs, _pca  # the paper metric's projection

    spread = reference.std(axis=0)
    varying = spread > 0
    joint = np.vstack([cells, reference])
    components = _pca(joint, _check_n_pcs(N_PCS, joint.shape[1], joint.shape[0]), seed)
    on_cells, on_reference = components[: len(cells)], components[len(cells) :]
    nonzero_cells = (cells > 0).sum(axis=1)
    return {
        "nonzero_genes_per_cell_mean": float(nonzero_cells.mean()),
        "nonzero_genes_per_cell_sd": float(nonzero_cells.std()),
        "nonzero_values_below_1pct_of_reference": float(
            np.mean(cells[cells > 0] < np.percentile(reference[reference > 0], 1))
        ),
        "gene_sd_ratio_median": float(np.median(cells.std(axis=0)[varying] / spread[varying])),
        "component_sd_ratio_median": float(
            np.median(on_cells.std(axis=0) / on_reference.std(axis=0))
        ),
        "forest_auroc_components": forest_auroc(on_cells, on_reference, seed, trees, threads),
        "forest_auroc_genes": forest_auroc(cells, reference, seed, trees, threads),
        "forest_auroc_cell_summaries": forest_auroc(
            cell_summaries(cells), cell_summaries(reference), seed, trees, threads
        ),
    }


def paper_rf_auroc_spread(
    cells: np.ndarray, reference: np.ndarray, seeds: int, threads: int = 1
) -> dict:
    """Mean and standard deviation of the paper's RF AUROC over metric seeds 0 .. seeds-1."""
    from groundgan.tl import rf_auroc

    values = [rf_auroc(reference, cells, seed=seed, n_jobs=threads) for seed in range(seeds)]
    return {
        "paper_rf_auroc_mean": float(np.mean(values)),
        "paper_rf_auroc_sd": float(np.std(values)),
    }


def diagnose(args: argparse.Namespace) -> dict:
    """The diagnosis of ``args.model``'s cells and of the control half, printed as a table."""
    import groundgan as gg
    from groundgan._validation import to_dense

    data = prepare(args)
    reference, other_half = halves(data["test"], args.seed)
    model = gg.GroundGAN.load(args.model)
    cells = simulate(model, "stage2", reference.shape[0], args.seed + 1)
    result = {
        "model": str(args.model),
        "steps": model.steps_,
        "reference_nonzero_genes_per_cell_mean": float((reference > 0).sum(axis=1).mean()),
        "simulated": separation(cells, reference, args.seed, args.trees, args.threads),
        "real_vs_real": separation(other_half, reference, args.seed, args.trees, args.threads),
    }
    sets = {"simulated": cells, "real_vs_real": other_half}
    if args.counts:
        depths = np.asarray(to_dense(data["train"].layers["counts"]).sum(axis=1)).ravel()
        sets["simulated_as_counts"] = round_to_counts(cells, depths, args.seed)
        result["simulated_as_counts"] = separation(
            sets["simulated_as_counts"], reference, args.seed, args.trees, args.threads
        )
    for key, X in sets.items():
        result[key].update(paper_rf_auroc_spread(X, reference, args.metric_seeds, args.threads))
    print(markdown(result))
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2))
    return result


def markdown(result: dict) -> str:
    columns = [c for c in ("simulated", "simulated_as_counts", "real_vs_real") if c in result]
    lines = ["| against half A | " + " | ".join(columns) + " |", "|---" * (len(columns) + 1) + "|"]
    for key in result["simulated"]:
        lines.append(f"| {key} | " + " | ".join(f"{result[c][key]:.3f}" for c in columns) + " |")
    return "\n".join(lines)
