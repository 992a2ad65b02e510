"""``groundgan demo``: the whole pipeline on the embedded PBMC cells, small enough for a laptop.

The demo is ``groundgan run`` with a built-in configuration (:func:`demo_config`), so its
output folder is a run directory like any other: run the demo again and the finished steps
are skipped, interrupt it and it resumes.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

DEFAULTS = dict(steps=300, genes=200, k=5, cells=1000, test=200, seed=0)


def add_parser(commands) -> None:
    p = commands.add_parser(
        "demo",
        help="run the whole pipeline on the embedded PBMC data",
        description=(
            "Preprocess the embedded PBMC cells, infer a GRN with GRNBoost2, train both stages "
            "briefly, simulate cells, evaluate them against held-out cells, and write the "
            "simulated AnnData, the evaluation table and a plot to --out (a 'groundgan run' "
            "directory: finished steps are skipped when the demo is run again)."
        ),
    )
    p.add_argument("--out", type=Path, default=Path("groundgan_demo"), help="output folder")
    p.add_argument(
        "--steps",
        type=int,
        default=DEFAULTS["steps"],
        help="training steps per stage (default %(default)s; the paper: 200,000 + 1,000,000)",
    )
    p.add_argument("--genes", type=int, default=DEFAULTS["genes"], help="highly variable genes")
    p.add_argument("--k", type=int, default=DEFAULTS["k"], help="TFs per target in the GRN")
    p.add_argument("--cells", type=int, default=DEFAULTS["cells"], help="cells to simulate")
    p.add_argument("--test", type=int, default=DEFAULTS["test"], help="held-out real cells")
    p.add_argument("--seed", type=int, default=DEFAULTS["seed"])
    p.add_argument("--device", default="auto", help="'auto', 'cpu' or 'cuda'")
    p.add_argument(
        "--precision",
        choices=("fp32", "bf16"),
        default="fp32",
        help="bf16: bfloat16 autocast (CUDA, or CPUs with AVX512-BF16/AMX)",
    )
    p.add_argument(
        "--keep-checkpoints",
        action="store_true",
        help="keep the training checkpoints (--out/checkpoints/); removed at the end by default",
    )
    p.set_defaults(func=run_demo)


def demo_settings(args: argparse.Namespace) -> dict[str, dict[str, Any]]:
    """The demo's configuration, as the sections of a ``groundgan run`` file."""
    return {
        "run": {"output": str(args.out)},
        "data": {"dataset": "pbmc68k_reduced"},
        "preprocess": {"n_top_genes": args.genes, "n_test": args.test, "seed": args.seed},
        "grn": {"species": "human", "k": args.k, "method": "grnboost2", "seed": args.seed},
        "model": {"labeler_hidden": [500, 500, 500], "sample_block_size": 256},
        "train": {
            "recipe": "fast",
            "max_steps_stage1": args.steps,
            "max_steps_stage2": args.steps,
            "device": args.device,
            "precision": args.precision,
            "seed": args.seed,
            "log_every": max(1, args.steps // 10),
            "checkpoint_every": max(1, args.steps),
        },
        "sample": {"n_cells": args.cells, "seed": args.seed},
        "evaluate": {"n_estimators": 200, "seed": args.seed, "plot": True},
    }


def demo_config(args: argparse.Namespace):
    """The validated :class:`~groundgan.cli._config.Config` of the demo."""
    from ._config import config_from_dict

    return config_from_dict(demo_settings(args), Path.cwd())


def run_demo(args: argparse.Namespace) -> int:
    """``groundgan demo``: returns the exit code (errors: one line, from ``groundgan.cli.main``)."""
    import matplotlib

    matplotlib.use("Agg")
    from ._run import Pipeline

    pipeline = Pipeline(demo_config(args))
    pipeline.run()
    kept = "checkpoints/ (kept), " if args.keep_checkpoints else ""
    if not args.keep_checkpoints:
        remove_checkpoints(pipeline.run_dir)
    print(
        f"wrote {pipeline.run_dir}/: simulated.h5ad, evaluation.csv, embedding.png, grn.csv, "
        f"model/, {kept}train.h5ad, test.h5ad, history.csv, config.json, steps/"
    )
    return 0


def remove_checkpoints(run_dir: Path) -> None:
    """Remove the demo's training checkpoints once it has finished (the model is saved)."""
    import shutil

    from ._run import CHECKPOINT_DIR

    shutil.rmtree(run_dir / CHECKPOINT_DIR, ignore_errors=True)
