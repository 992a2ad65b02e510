"""Learning curves: realism of GroundGAN's cells against held-out real cells while it trains.

Trains GroundGAN on a real data set with a held-out test split and, every ``--eval-every``
steps of each stage, simulates cells and scores them with ``gg.tl.evaluate`` at the paper's
settings (cosine and Euclidean centroid distances, MMD, RF AUROC with 1,000 trees, miLISI).
Stage-1 points score the causal controller's own cells (all genes from the controller);
stage-2 points score the full model's. Each point records the step and the training time so
far, wall-clock and process CPU seconds, with the evaluations' own time left out.

Equal cell counts: the held-out cells are split into two seeded halves A and B of equal size.
Every row compares a set of ``|A|`` cells with half A: the simulated cells (``|A|`` of them) and
half B, the real-vs-real control, drawn as a line in the plot. MMD, RF AUROC and miLISI all
depend on the number of cells, so only rows of equal sizes are comparable.

Optionally (``--grn-recovery``), at the last point, GRNBoost2 is run on 1,000 simulated cells
and scored against the imposed GRN (each target's TFs of GRNBoost2 ranks 1, 3, 5, ... on the
training cells: the positive control) and against the negative control (ranks 2, 4, 6, ...),
as ``benchmarks/grn_recovery.py`` does; the real training cells' own AUPRC against the
imposed GRN is the reference.

``--metric-seeds N`` also records, at every point and for the control, the RF AUROC's mean and
standard deviation over metric seeds 0 .. N-1 (its split, components and forest), whose spread
is of the size of the differences between neighbouring points.

Variants (``--variant``) are named training recipes (see :data:`VARIANTS`); the ``fast-*``
variants named after a patch of ``reference_step.py`` give the fast recipe one of the reference
implementation's training-step choices, for side-by-side measurement. Run several in
parallel processes (``--threads 1`` each: the step axis does not depend on load, and CPU
seconds depend little on it), then draw them together::

    GROUNDGAN_DATA_DIR=../shared/data python benchmarks/learning_curve.py run \\
        --data mouse --genes 200 --variant fast --steps-stage1 2000 --steps-stage2 3000 \\
        --eval-every 500 --threads 1 --json fast.json
    python benchmarks/learning_curve.py plot paper.json fast.json --out curves.png

``--data`` is ``mouse`` (the 10k real mouse cells, mouse TFs), ``pbmc`` (the embedded 700
PBMC cells, human TFs) or a path to an ``.h5ad`` file of raw counts (``--species`` names its TF
list). The GRN (GRNBoost2 on the training cells) is cached under ``--cache`` so parallel
variants share it.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
from reference_step import PATCHES  # this folder is on sys.path when run

#: Recipes compared by this script: ``model`` keyword arguments and ``train`` keyword arguments.
#: ``paper``: the paper's learning rates, batch sizes and n_critic on a short schedule.
VARIANTS: dict[str, dict[str, dict]] = {
    "paper": {"model": {}, "train": {"recipe": "paper"}},
    "fast": {"model": {}, "train": {"recipe": "fast"}},
    "fast-warm-critic": {"model": {}, "train": {"recipe": "fast", "warm_start_critic": True}},
    # the reference implementation's step choices (reference_step.py), one at a time
    **{
        f"fast-{patch}": {"model": {}, "train": {"recipe": "fast"}, "patch": patch}
        for patch in PATCHES
    },
}
#: The metrics of a point, in the order of the plot's panels.
METRICS = ("mmd", "rf_auroc", "milisi", "euclidean")
DATASETS = {"mouse": "mouse", "pbmc": "human"}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    run = commands.add_parser("run", help="train one variant and record its curve")
    add_data_arguments(run)
    run.add_argument("--variant", default="fast", help=f"one of {sorted(VARIANTS)}")
    run.add_argument(
        "--set",
        nargs="*",
        default=[],
        metavar="KEY=VALUE",
        help="extra train() keyword arguments (JSON values), e.g. n_critic=3 ema_decay=0.999",
    )
    run.add_argument(
        "--set-stage2",
        nargs="*",
        default=[],
        metavar="KEY=VALUE",
        help="train() keyword arguments for stage 2 only (stage 1 is then trained by a call of "
        "its own), e.g. gp_lambda=10",
    )
    run.add_argument(
        "--model-set", nargs="*", default=[], metavar="KEY=VALUE", help="extra model arguments"
    )
    run.add_argument("--name", default=None, help="label of the curve (default: the variant)")
    run.add_argument("--steps-stage1", type=int, default=2000)
    run.add_argument("--steps-stage2", type=int, default=3000)
    run.add_argument("--eval-every", type=int, default=500, help="stage-2 evaluation interval")
    run.add_argument("--eval-every-stage1", type=int, default=None, help="default: --eval-every")
    run.add_argument("--grn-recovery", action="store_true", help="score GRN recovery at the end")
    run.add_argument(
        "--metric-seeds",
        type=int,
        default=1,
        help="also record the RF AUROC's mean and standard deviation over metric seeds "
        "0 .. N-1 at every point and for the control (N > 1)",
    )
    run.add_argument("--json", required=True, help="write the record here (after every point)")
    run.add_argument("--save-model", default=None, help="save the trained model to this folder")
    diagnose = commands.add_parser(
        "diagnose", help="what separates a trained model's cells from held-out real cells"
    )
    add_data_arguments(diagnose)
    diagnose.add_argument("--model", required=True, help="folder of a saved GroundGAN")
    diagnose.add_argument("--trees", type=int, default=300, help="trees of each forest")
    diagnose.add_argument(
        "--metric-seeds", type=int, default=5, help="seeds of the paper's RF AUROC"
    )
    diagnose.add_argument(
        "--counts",
        action="store_true",
        help="also diagnose the simulated cells rounded to counts at the training cells' depths",
    )
    diagnose.add_argument("--json", default=None, help="also write the figures here")
    plot = commands.add_parser("plot", help="draw recorded curves together")
    plot.add_argument("records", nargs="+", help="JSON records of 'run'")
    plot.add_argument("--out", required=True, help="PNG file")
    plot.add_argument("--title", default=None)
    table = commands.add_parser("table", help="the recorded points as a Markdown table")
    table.add_argument("records", nargs="+", help="JSON records of 'run'")
    return parser.parse_args(argv)


def add_data_arguments(parser: argparse.ArgumentParser) -> None:
    """The options that choose the cells, the split and the GRN (``run`` and ``diagnose``)."""
    parser.add_argument("--data", default="mouse", help="'mouse', 'pbmc' or a path to an .h5ad")
    parser.add_argument("--species", default=None, help="TF list of an .h5ad: human or mouse")
    parser.add_argument("--genes", type=int, default=200, help="highly variable genes")
    parser.add_argument("--k", type=int, default=10, help="TFs per target (positive control)")
    parser.add_argument("--n-test", type=int, default=1000, help="held-out cells (two halves)")
    parser.add_argument(
        "--n-train",
        type=int,
        default=None,
        help="train on this many of the training cells (seeded; the GRN is still inferred "
        "from all of them, so only the number of cells changes)",
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1, help="torch and metric threads")
    parser.add_argument("--cache", default=".learning_curve_cache", help="GRN cache folder")


def parse_assignments(items: list[str]) -> dict:
    """``["a=1", "b=\"x\""]`` -> ``{"a": 1, "b": "x"}`` (values as JSON, else strings)."""
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep:
            raise SystemExit(f"expected KEY=VALUE, got {item!r}")
        try:
            out[key] = json.loads(value)
        except json.JSONDecodeError:
            out[key] = value
    return out


# data --------------------------------------------------------------------------------------
def load_cells(data: str):
    import anndata as ad

    import groundgan as gg

    if data == "mouse":
        return gg.datasets.mouse_10k_subset()
    if data == "pbmc":
        return gg.datasets.pbmc68k_reduced()
    return ad.read_h5ad(data)


def prepare(args: argparse.Namespace) -> dict:
    """Preprocessed training and test cells restricted to the imposed GRN, and the GRNs."""
    import pandas as pd

    import groundgan as gg

    species = args.species or DATASETS.get(args.data)
    if species is None:
        raise SystemExit("--species is needed with an .h5ad path")
    adata = load_cells(args.data)
    gg.pp.preprocess(adata, n_top_genes=args.genes)
    train, test = gg.pp.train_test_split(adata, n_test=args.n_test, seed=args.seed)
    cache = Path(args.cache) / (
        f"{Path(args.data).stem}_{args.genes}genes_{args.n_test}test_seed{args.seed}.csv"
    )
    if cache.exists():
        table = pd.read_csv(cache)
    else:
        table = gg.grn.importance_table(
            train, gg.datasets.tf_list(species), seed=args.seed, progress=False
        )
        cache.parent.mkdir(parents=True, exist_ok=True)
        table.to_csv(cache.with_suffix(".tmp"), index=False)
        os.replace(cache.with_suffix(".tmp"), cache)
    imposed = gg.grn.from_importances(table, k=args.k, strategy="positive_control")
    negative = gg.grn.from_importances(table, k=args.k, strategy="negative_control")
    train, test = gg.grn.subset(train, imposed), gg.grn.subset(test, imposed)
    if args.n_train is not None:
        if not 0 < args.n_train <= train.n_obs:
            raise SystemExit(f"--n-train must be between 1 and {train.n_obs}")
        keep = np.random.default_rng(args.seed).choice(train.n_obs, args.n_train, replace=False)
        train = train[np.sort(keep)].copy()
    tfs, targets = set(imposed["tf"]), set(imposed["target"])
    negative = negative[negative["tf"].isin(tfs) & negative["target"].isin(targets)]
    return {"train": train, "test": test, "imposed": imposed, "negative": negative}


def halves(test, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Two seeded random halves of the test cells, as dense float64 matrices."""
    from groundgan._validation import to_dense

    X = np.asarray(to_dense(test.X), dtype=np.float64)
    order = np.random.default_rng(seed).permutation(X.shape[0])
    n = X.shape[0] // 2
    return X[order[:n]], X[order[n : 2 * n]]


# the curve ---------------------------------------------------------------------------------
class Clock:
    """Training time so far (wall and process CPU), with the evaluations' time left out."""

    def __init__(self) -> None:
        self.wall0, self.cpu0 = time.perf_counter(), time.process_time()
        self.excluded_wall = self.excluded_cpu = 0.0

    def training(self) -> tuple[float, float]:
        return (
            time.perf_counter() - self.wall0 - self.excluded_wall,
            time.process_time() - self.cpu0 - self.excluded_cpu,
        )

    def exclude(self, wall: float, cpu: float) -> None:
        self.excluded_wall += wall
        self.excluded_cpu += cpu


def score(
    reference: np.ndarray, cells: np.ndarray, seed: int, threads: int, metric_seeds: int = 1
) -> dict:
    """The paper's realism metrics of ``cells`` against ``reference`` (equal sizes); with
    ``metric_seeds > 1`` also the RF AUROC's mean and standard deviation over metric seeds
    ``0 .. metric_seeds - 1`` (``rf_auroc_mean``, ``rf_auroc_sd``)."""
    import groundgan as gg

    table = gg.tl.evaluate(reference, {"set": cells}, seed=seed, control=False, n_jobs=threads)
    scores = {k: float(v) for k, v in table.loc["set"].items()}
    if metric_seeds > 1:
        from realism_diagnosis import paper_rf_auroc_spread  # this folder is on sys.path

        spread = paper_rf_auroc_spread(cells, reference, metric_seeds, threads)
        scores["rf_auroc_mean"] = spread["paper_rf_auroc_mean"]
        scores["rf_auroc_sd"] = spread["paper_rf_auroc_sd"]
    return scores


def simulate(model, stage: str, n_cells: int, seed: int) -> np.ndarray:
    """``n_cells`` cells of the model: the causal controller's alone during stage 1."""
    if stage == "stage2":
        return np.asarray(model.sample(n_cells, seed=seed).X, dtype=np.float64)
    from groundgan.model import _sampling  # no public call samples the controller alone

    blocks = _sampling.generate_blocks(model, n_cells, seed, stage1_only=True)
    return np.concatenate(list(blocks), axis=0).astype(np.float64)


def grn_recovery(model, data: dict, seed: int) -> dict:
    """Imposed vs negative-control AUPRC of GRNBoost2 on 1,000 simulated cells."""
    from grn_recovery import recover_from_simulated  # this folder is on sys.path when run

    import groundgan as gg

    sim = model.sample(1000, seed=seed)
    imposed, control, silent = recover_from_simulated(sim, data["imposed"], data["negative"], seed)
    real = gg.tl.grn_benchmark(data["train"], data["imposed"], method="grnboost2", seed=seed)
    return {
        "genes_silent_in_simulated_cells": silent,
        "imposed": imposed.to_series().to_dict(),
        "negative_control": control.to_series().to_dict(),
        "real_cells_vs_imposed": real.to_series().to_dict(),
    }


def run(args: argparse.Namespace) -> dict:
    import torch

    torch.set_num_threads(args.threads)
    import groundgan as gg

    if args.variant not in VARIANTS:
        raise SystemExit(f"unknown variant {args.variant!r}; one of {sorted(VARIANTS)}")
    variant = VARIANTS[args.variant]
    if "patch" in variant:
        PATCHES[variant["patch"]]()
    model_kwargs = {**variant["model"], **parse_assignments(args.model_set)}
    train_kwargs = {**variant["train"], **parse_assignments(args.set)}
    stage2_kwargs = parse_assignments(args.set_stage2)
    data = prepare(args)
    reference, other_half = halves(data["test"], args.seed)
    n_cells = reference.shape[0]
    record = {
        "name": args.name or args.variant,
        "variant": args.variant,
        "patch": variant.get("patch"),
        "model_kwargs": model_kwargs,
        "train_kwargs": train_kwargs,
        "stage2_train_kwargs": stage2_kwargs,
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "command": "python benchmarks/learning_curve.py " + " ".join(sys.argv[1:]),
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores",
        "torch_threads": torch.get_num_threads(),
        "load_average_start": list(os.getloadavg()),
        "data": args.data,
        "genes": int(data["train"].n_vars),
        "train_cells": int(data["train"].n_obs),
        "cells_per_row": n_cells,
        "edges": len(data["imposed"]),
        "tfs": int(data["imposed"]["tf"].nunique()),
        "steps": [args.steps_stage1, args.steps_stage2],
        "metric_seeds": args.metric_seeds,
        "control": score(reference, other_half, args.seed, args.threads, args.metric_seeds),
        "points": [],
    }
    print(f"control (real half B vs half A, {n_cells} cells each): {record['control']}")
    gg.GroundGAN.setup_anndata(data["train"], grn=data["imposed"])
    model = gg.GroundGAN(data["train"], **model_kwargs)
    clock = Clock()

    def evaluate(model, stage: str, step: int) -> None:
        wall, cpu = clock.training()
        t0, c0 = time.perf_counter(), time.process_time()
        cells = simulate(model, stage, n_cells, args.seed + 1)
        record["hyperparameters"] = model.train_record_["hyperparameters"]
        point = {"stage": stage, "step": step, "train_seconds": wall, "train_cpu_seconds": cpu}
        point.update(score(reference, cells, args.seed, args.threads, args.metric_seeds))
        record["points"].append(point)
        Path(args.json).write_text(json.dumps(record, indent=2))
        print(json.dumps(point), flush=True)
        clock.exclude(time.perf_counter() - t0, time.process_time() - c0)

    every1 = args.eval_every_stage1 or args.eval_every
    calls = [((1, 2), train_kwargs)]
    if stage2_kwargs:  # one call per stage, the second with its own values
        calls = [((1,), train_kwargs), ((2,), {**train_kwargs, **stage2_kwargs})]
    for stages, kwargs in calls:
        model.train(
            max_steps_stage1=args.steps_stage1,
            max_steps_stage2=args.steps_stage2,
            stages=stages,
            seed=args.seed,
            progress_bar=False,
            device="cpu",
            callbacks=[
                (every1, _only("stage1", evaluate)),
                (args.eval_every, _only("stage2", evaluate)),
            ],
            **kwargs,
        )
    record["history_attrs"] = {k: _jsonable(v) for k, v in model.history_.attrs.items()}
    if args.save_model:
        model.save(args.save_model, overwrite=True)
    if args.grn_recovery:
        record["grn_recovery"] = grn_recovery(model, data, args.seed)
    record["load_average_end"] = list(os.getloadavg())
    Path(args.json).write_text(json.dumps(record, indent=2))
    return record


def _only(stage: str, callback):
    def call(model, name: str, step: int) -> None:
        if name == stage:
            callback(model, name, step)

    return call


def _jsonable(value):
    try:
        json.dumps(value)
        return value
    except TypeError:
        return str(value)


# the plot ----------------------------------------------------------------------------------
def plot(records: list[dict], out: str, title: str | None = None) -> None:
    """Metrics against steps and against training CPU seconds; the control as a line."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, len(METRICS), figsize=(4.2 * len(METRICS), 7), squeeze=False)
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for i, record in enumerate(records):
        color = colors[i % len(colors)]
        points = record["points"]
        s1 = [p for p in points if p["stage"] == "stage1"]
        s2 = [p for p in points if p["stage"] == "stage2"]
        offset = record["steps"][0]
        for j, metric in enumerate(METRICS):
            for row, x_of in ((0, _step_axis(offset)), (1, lambda p: p["train_cpu_seconds"] / 60)):
                ax = axes[row][j]
                if s1:
                    xs, ys = [x_of(p) for p in s1], [p[metric] for p in s1]
                    ax.plot(xs, ys, ":x", color=color, ms=4)  # a single point still shows
                ax.plot(
                    [x_of(p) for p in s2],
                    [p[metric] for p in s2],
                    "o-",
                    color=color,
                    ms=3,
                    label=record["name"] if j == 0 and row == 0 else None,
                )
                if metric == "rf_auroc":
                    _seed_spread(ax, [x_of(p) for p in points], points, color)
                if i == 0 or record["control"] != records[0]["control"]:
                    ax.axhline(record["control"][metric], color="0.3", lw=0.8, ls="--")
    for j, metric in enumerate(METRICS):
        axes[0][j].set_title(metric)
        axes[0][j].set_xlabel("training step (stage 1, dotted x, then stage 2)")
        axes[1][j].set_xlabel("training CPU minutes")
        for row in (0, 1):
            if metric == "mmd":
                axes[row][j].set_yscale("log")
    axes[0][0].legend(fontsize=8)
    fig.suptitle(
        title
        or "realism while training; dashed: real-vs-real control at equal size; "
        "bars: RF AUROC mean ± sd over metric seeds, where recorded"
    )
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    print(f"wrote {out}")


def _seed_spread(ax, xs: list[float], points: list[dict], color) -> None:
    """The RF AUROC's mean ± sd over metric seeds, where recorded, as error bars."""
    spread = [(x, p) for x, p in zip(xs, points, strict=True) if "rf_auroc_mean" in p]
    if spread:
        ax.errorbar(
            [x for x, _ in spread],
            [p["rf_auroc_mean"] for _, p in spread],
            yerr=[p["rf_auroc_sd"] for _, p in spread],
            fmt="_",
            color=color,
            alpha=0.5,
            capsize=3,
        )


def markdown_table(records: list[dict]) -> str:
    """One row per recorded point (and each record's control), metrics rounded for reading."""
    lines = [
        "| recipe | stage | step | training CPU s | MMD | RF AUROC | miLISI | Euclidean |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for record in records:
        c = record["control"]
        lines.append(
            f"| {record['name']} | real vs real | | | {c['mmd']:.4f} | {_rf_auroc_cell(c)} "
            f"| {c['milisi']:.3f} | {c['euclidean']:.0f} |"
        )
        for p in record["points"]:
            lines.append(
                f"| {record['name']} | {p['stage'][-1]} | {p['step']} | "
                f"{p['train_cpu_seconds']:.0f} | {p['mmd']:.4f} | {_rf_auroc_cell(p)} | "
                f"{p['milisi']:.3f} | {p['euclidean']:.0f} |"
            )
    return "\n".join(lines)


def _rf_auroc_cell(scores: dict) -> str:
    """The RF AUROC at the record's seed, and its mean ± sd over metric seeds if recorded."""
    cell = f"{scores['rf_auroc']:.3f}"
    if "rf_auroc_mean" in scores:
        cell += f" (seeds: {scores['rf_auroc_mean']:.3f} ± {scores['rf_auroc_sd']:.3f})"
    return cell


def _step_axis(offset: int):
    return lambda p: p["step"] + (offset if p["stage"] == "stage2" else 0)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.command == "run":
        run(args)
        return
    if args.command == "diagnose":
        from realism_diagnosis import diagnose  # this folder is on sys.path when run

        diagnose(args)
        return
    records = [json.loads(Path(r).read_text()) for r in args.records]
    if args.command == "plot":
        plot(records, args.out, args.title)
    else:
        print(markdown_table(records))


if __name__ == "__main__":
    main()
