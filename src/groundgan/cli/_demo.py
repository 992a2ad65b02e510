"""``groundgan demo``: the whole pipeline on the embedded PBMC cells, small enough for a laptop."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

DEFAULTS = dict(steps=300, genes=200, k=5, cells=1000, test=200, seed=0)


def add_parser(commands) -> None:
    p = commands.add_parser(
        "demo",
        help="run the whole pipeline on the embedded PBMC data",
        description=(
            "Preprocess the embedded PBMC cells, infer a GRN with GRNBoost2, train both stages "
            "briefly, simulate cells, evaluate them against held-out cells, and write the "
            "simulated AnnData, the table and a plot to --out."
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
    p.set_defaults(func=run_demo)


def _log(message: str, start: float) -> None:
    print(f"[{time.perf_counter() - start:6.1f} s] {message}", flush=True)


def run_demo(args: argparse.Namespace) -> int:
    import matplotlib

    matplotlib.use("Agg")
    import groundgan as gg

    start = time.perf_counter()
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)

    adata = gg.datasets.pbmc68k_reduced()
    gg.pp.preprocess(adata, n_top_genes=args.genes)
    train, test = gg.pp.train_test_split(adata, n_test=args.test, seed=args.seed)
    _log(
        f"preprocessed: {train.n_obs} training and {test.n_obs} test cells x {adata.n_vars} genes",
        start,
    )

    tfs = gg.datasets.tf_list("human")
    grn = gg.grn.infer(train, tfs=tfs, k=args.k, seed=args.seed, progress=False)
    gg.grn.write(grn, out / "grn.csv")
    _log(
        f"GRN (GRNBoost2, top {args.k}): {grn.tf.nunique()} TFs -> {grn.target.nunique()} targets, "
        f"{len(grn)} edges",
        start,
    )

    train_cells, test_cells = gg.grn.subset(train, grn), gg.grn.subset(test, grn)
    gg.GroundGAN.setup_anndata(train_cells, grn=grn)
    model = gg.GroundGAN(train_cells, labeler_hidden=(500, 500, 500), sample_block_size=256)
    print(model)
    model.train(
        max_steps_stage1=args.steps,
        max_steps_stage2=args.steps,
        batch_size_stage1=128,
        batch_size_stage2=256,
        lr_stage1=1e-3,
        lr_stage1_final=1e-4,
        device=args.device,
        seed=args.seed,
        log_every=max(1, args.steps // 10),
    )
    model.save(out / "model", overwrite=True)
    _log(f"trained {args.steps} + {args.steps} steps", start)

    sim = model.sample(args.cells, seed=args.seed)
    sim.write_h5ad(out / "simulated.h5ad")
    untrained = gg.GroundGAN(train_cells, labeler_hidden=(500, 500, 500), sample_block_size=256)
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        baseline = untrained.sample(args.cells, seed=args.seed)
    table = gg.tl.evaluate(
        test_cells, {"GroundGAN": sim, "untrained": baseline}, seed=args.seed, n_estimators=200
    )
    table.to_csv(out / "evaluation.csv")
    _log("evaluated against held-out cells", start)
    print(table.to_string(float_format=lambda v: f"{v:.4g}"))

    gg.pl.embedding(test_cells, sim, seed=args.seed, show=False, save=out / "embedding.png")
    _log(f"wrote {out}/: simulated.h5ad, evaluation.csv, embedding.png, grn.csv, model/", start)
    return 0
