"""Table 1 of the GRouNdGAN paper: every simulator against held-out real cells.

Pipeline (the paper's, Methods): the raw cells are clustered (Cell Ranger-style recipe, Louvain
resolution 0.15; ``gg.pp.cluster``) for the conditional models, preprocessed (``gg.pp.preprocess``:
filters, 1000 HVGs, library-size normalisation to 20,000), split into training and ``--n-test``
held-out test cells; a GRN is inferred from the training cells (GRNBoost2, top ``--k`` TFs per
target) and both sets are restricted to its genes (``gg.grn.subset``), so every model trains
and is evaluated on the same genes. GRouNdGAN, scGAN, cscGAN, cWGAN (conditional on the
clusters), scDesign2 and SPARSim (unconditional, as in the paper's PBMC-CTL table) are
trained, each simulates as many cells as the test set, and ``gg.tl.evaluate`` prints the table
(cosine and Euclidean centroid distances, MMD, RF AUROC, miLISI, and the real-vs-real control).

Budget: ``--steps`` steps for scGAN, cscGAN, cWGAN and GRouNdGAN's stage 1, ``--steps-stage2``
for GRouNdGAN's stage 2; ``--paper-steps`` uses the paper's 200,000 and 1,000,000 (a GPU job).
The small defaults finish in minutes on a laptop CPU but leave every GAN heavily under-trained.

Usage::

    GROUNDGAN_DATA_DIR=../shared/data python benchmarks/table1.py --data pbmc68k_reduced \\
        --steps 60 --steps-stage2 10 --n-test 200 --threads 1 --out results.csv

Prints the table (and writes it to ``--out`` as CSV, with each model's training seconds), and
a JSON line describing the run: command, machine, torch threads, load average, date.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import platform
import sys
import time
import warnings
from collections.abc import Callable
from datetime import datetime, timezone

#: Data sets (loader names in ``gg.datasets``) and the species of their TF list.
DATASETS = {"pbmc68k_reduced": "human", "pbmc68k": "human", "mouse_10k_subset": "mouse"}
#: The paper's training budgets: stage 1 (and the stand-alone GANs) and stage 2.
PAPER_STEPS, PAPER_STEPS_STAGE2 = 200_000, 1_000_000
CLUSTERS = "cluster"
#: Rows of the paper's table, in its order, and the optional bfloat16 GRouNdGAN row.
PAPER_ROWS = ("GRouNdGAN", "scGAN", "cscGAN", "cWGAN", "scDesign2", "SPARSim")
GROUNDGAN_BF16 = "GRouNdGAN-bf16"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", choices=sorted(DATASETS), default="pbmc68k_reduced")
    parser.add_argument("--steps", type=int, default=60, help="GAN steps (and GRouNdGAN stage 1)")
    parser.add_argument("--steps-stage2", type=int, default=10, help="GRouNdGAN stage-2 steps")
    parser.add_argument("--paper-steps", action="store_true", help="200,000 / 1,000,000 steps")
    parser.add_argument(
        "--lr",
        choices=("paper", "short"),
        default="paper",
        help="paper: scGAN-style GANs 1e-4 -> 1e-5; short: 1e-3 -> 1e-4 (for short runs)",
    )
    parser.add_argument("--batch-size-stage2", type=int, default=1024, help="paper: 1024")
    parser.add_argument("--n-test", type=int, default=200)
    parser.add_argument("--n-top-genes", type=int, default=1000)
    parser.add_argument("--k", type=int, default=15, help="TFs per target in the GRN")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    parser.add_argument("--jobs", type=int, default=-1, help="parallel jobs of the metrics")
    parser.add_argument("--out", default=None, help="write the table to this CSV file")
    parser.add_argument(
        "--models",
        nargs="+",
        choices=[*PAPER_ROWS, GROUNDGAN_BF16],
        default=list(PAPER_ROWS),
        help=f"rows to train (default: the paper's); {GROUNDGAN_BF16}: GRouNdGAN trained with "
        "precision='bf16' (same seed), for the effect of bfloat16 autocast on the metrics",
    )
    args = parser.parse_args(argv)
    if args.paper_steps:
        args.steps, args.steps_stage2 = PAPER_STEPS, PAPER_STEPS_STAGE2
    return args


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


# ----------------------------------------------------------------------------- data


def prepare(args: argparse.Namespace):
    """(train, test, grn): clustered, preprocessed, split, restricted to the GRN's genes."""
    import groundgan as gg

    adata = getattr(gg.datasets, args.data)()
    gg.pp.cluster(adata, key_added=CLUSTERS, seed=args.seed)  # on the raw counts, as the paper
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # "keeping all genes" on small data
        gg.pp.preprocess(adata, n_top_genes=args.n_top_genes)
    train, test = gg.pp.train_test_split(adata, n_test=args.n_test, seed=args.seed)
    tfs = gg.datasets.tf_list(DATASETS[args.data])
    grn = gg.grn.infer(train, tfs=tfs, k=args.k, seed=args.seed, progress=False)
    train, test = gg.grn.subset(train, grn), gg.grn.subset(test, grn)
    log(
        f"data: {train.n_obs} training + {test.n_obs} test cells x {train.n_vars} genes; GRN "
        f"{grn['tf'].nunique()} TFs, {grn['target'].nunique()} targets, {len(grn):,} edges; "
        f"clusters {train.obs[CLUSTERS].value_counts().to_dict()}"
    )
    return train, test, grn


# ----------------------------------------------------------------------------- models


def gan_learning_rates(args: argparse.Namespace) -> dict[str, float]:
    """The stage-1 (scGAN) learning-rate schedule."""
    return {"lr": 1e-4, "lr_final": 1e-5} if args.lr == "paper" else {"lr": 1e-3, "lr_final": 1e-4}


def simulate_groundgan(train, grn, n_cells: int, args, precision: str = "fp32"):
    import groundgan as gg

    cells = train.copy()
    gg.GroundGAN.setup_anndata(cells, grn=grn)
    model = gg.GroundGAN(cells, seed=args.seed)
    rates = gan_learning_rates(args)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # batch larger than the training set
        warnings.simplefilter("ignore", RuntimeWarning)  # bf16 off CUDA: slow, but measured
        model.train(
            max_steps_stage1=args.steps,
            max_steps_stage2=args.steps_stage2,
            batch_size_stage2=args.batch_size_stage2,
            lr_stage1=rates["lr"],
            lr_stage1_final=rates["lr_final"],
            device=args.device,
            precision=precision,
            seed=args.seed,
            progress_bar=False,
        )
    return model.sample(n_cells, seed=args.seed)


def simulate_gan(cls, labels_key: str | None) -> Callable:
    def simulate(train, grn, n_cells: int, args):
        cells = train.copy()
        cls.setup_anndata(cells, labels_key=labels_key)
        model = cls(cells, seed=args.seed)
        model.train(
            max_steps=args.steps,
            device=args.device,
            seed=args.seed,
            progress_bar=False,
            **gan_learning_rates(args),
        )
        return model.sample(n_cells, seed=args.seed)

    return simulate


def simulate_statistical(cls) -> Callable:
    def simulate(train, grn, n_cells: int, args):
        cells = train.copy()
        cls.setup_anndata(cells)
        model = cls(cells)
        model.train(seed=args.seed)
        return model.sample(n_cells, seed=args.seed)

    return simulate


def simulators() -> dict[str, Callable]:
    """Row name -> ``simulate(train, grn, n_cells, args)``, in the paper's order."""
    from groundgan.baselines import CWGAN, CscGAN, ScDesign2, ScGAN, SPARSim

    return {
        "GRouNdGAN": simulate_groundgan,
        GROUNDGAN_BF16: functools.partial(simulate_groundgan, precision="bf16"),
        "scGAN": simulate_gan(ScGAN, None),
        "cscGAN": simulate_gan(CscGAN, CLUSTERS),
        "cWGAN": simulate_gan(CWGAN, CLUSTERS),
        "scDesign2": simulate_statistical(ScDesign2),
        "SPARSim": simulate_statistical(SPARSim),
    }


# ----------------------------------------------------------------------------- run


def run_description(args: argparse.Namespace, started: float) -> dict:
    import torch

    return {
        "command": " ".join(["python", *sys.argv]),
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "seconds": round(time.perf_counter() - started, 1),
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, {platform.platform()}",
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "device": args.device,
        "load_average": [round(x, 2) for x in os.getloadavg()],
        "steps": args.steps,
        "steps_stage2": args.steps_stage2,
        "lr": args.lr,
        "models": args.models,
    }


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    started = time.perf_counter()
    import torch

    import groundgan as gg

    if args.threads is not None:
        torch.set_num_threads(args.threads)
    train, test, grn = prepare(args)
    sims, seconds = {}, {}
    for name, simulate in simulators().items():
        if name not in args.models:
            continue
        start = time.perf_counter()
        sims[name] = simulate(train, grn, test.n_obs, args)
        seconds[name] = round(time.perf_counter() - start, 1)
        log(f"{name}: trained and sampled in {seconds[name]} s")
    table = gg.tl.evaluate(test, sims, seed=args.seed, n_jobs=args.jobs)
    table["train_seconds"] = [seconds.get(name, float("nan")) for name in table.index]
    print(table.round(4).to_string())
    if args.out:
        table.to_csv(args.out)
    print(json.dumps(run_description(args, started)))


if __name__ == "__main__":
    main()
