"""GRN recovery from simulated cells (the logic of the paper's Figure 2).

Train GroundGAN on real cells with a positive-control GRN (each target's TFs of GRNBoost2
importance ranks 1, 3, 5, ...), simulate cells, infer a GRN from them with GRNBoost2, and score
it against the imposed (positive-control) edges, against the negative-control edges (ranks
2, 4, 6, ...: as plausible in the real data, but not imposed) and against random.

    GROUNDGAN_DATA_DIR=../shared/data python benchmarks/grn_recovery.py \
        --genes 200 --k 5 --steps 1000 --steps-stage2 1000 --cells 1000 --json out.json

With ``--tf-targets`` the control GRNs are cascades (TFs may regulate TFs; see
``gg.grn.from_importances``), and the record splits every score by edge kind
(TF -> TF, TF -> target).

Prints a JSON record and writes a PR-curve plot when ``--plot`` is given.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from datetime import datetime, timezone

import torch


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--genes", type=int, default=200, help="highly variable genes")
    p.add_argument("--k", type=int, default=5, help="TFs per target in each control GRN")
    p.add_argument("--steps", type=int, default=1000, help="stage-1 steps")
    p.add_argument("--steps-stage2", type=int, default=1000, help="stage-2 steps")
    p.add_argument("--cells", type=int, default=1000, help="simulated cells")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1, help="torch threads")
    p.add_argument(
        "--tf-targets", action="store_true", help="cascade control GRNs: TFs may regulate TFs"
    )
    p.add_argument("--json", help="write the record to this file")
    p.add_argument("--plot", help="write the PR curves to this PNG")
    return p.parse_args(argv)


def restrict(grn, tfs, targets):
    """Edges of ``grn`` between the given TFs and targets."""
    return grn[grn["tf"].isin(tfs) & grn["target"].isin(targets)].reset_index(drop=True)


def recover_from_simulated(sim, imposed, negative, seed: int):
    """GRNBoost2 once on the simulated cells, scored against the imposed and the negative-control
    edges between the genes that are expressed in them.

    Genes zero in every simulated cell cannot be regressed, so their edges stay out of both
    scores; returns ``(imposed_result, control_result, n_silent_genes)``.
    """
    import numpy as np

    import groundgan as gg

    expressed = set(sim.var_names[np.asarray(sim.X.sum(axis=0)).ravel() > 0])
    tfs = sorted(set(imposed["tf"]) & expressed)
    targets = sorted(set(imposed["target"]) & expressed)
    inferred = gg.grn.importance_table(sim, tfs, targets=targets, seed=seed, progress=False)
    imposed_result = gg.tl.grn_benchmark(sim, restrict(imposed, tfs, targets), method=inferred)
    control_result = gg.tl.grn_benchmark(sim, restrict(negative, tfs, targets), method=inferred)
    return imposed_result, control_result, int(sim.n_vars - len(expressed))


def main(argv=None) -> dict:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    import groundgan as gg

    start = time.perf_counter()
    adata = gg.datasets.pbmc68k_reduced()
    gg.pp.preprocess(adata, n_top_genes=args.genes)
    train, _ = gg.pp.train_test_split(adata, n_test=100, seed=args.seed)
    table = gg.grn.importance_table(
        train, gg.datasets.tf_list("human"), seed=args.seed, progress=False
    )
    positive = gg.grn.from_importances(
        table, k=args.k, strategy="positive_control", tf_targets=args.tf_targets
    )
    negative = gg.grn.from_importances(
        table, k=args.k, strategy="negative_control", tf_targets=args.tf_targets
    )
    cells = gg.grn.subset(train, positive)
    gg.GroundGAN.setup_anndata(cells, grn=positive)
    model = gg.GroundGAN(cells, labeler_hidden=(500, 500, 500), sample_block_size=512)
    model.train(
        max_steps_stage1=args.steps,
        max_steps_stage2=args.steps_stage2,
        batch_size_stage1=128,
        batch_size_stage2=512,
        lr_stage1=1e-3,
        lr_stage1_final=1e-4,
        seed=args.seed,
        progress_bar=False,
        device="auto",
    )
    sim = model.sample(args.cells, seed=args.seed)
    tfs, targets = set(positive["tf"]), set(positive["target"])
    negative = restrict(negative, tfs, targets)
    imposed, control, silent = recover_from_simulated(sim, positive, negative, args.seed)
    real = gg.tl.grn_benchmark(cells, positive, method="grnboost2", seed=args.seed)
    record = {
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "command": "python benchmarks/grn_recovery.py "
        + " ".join(sys.argv[1:] if argv is None else argv),
        "machine": f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} torch thread(s)",
        "device": str(model.device),
        "genes": int(cells.n_vars),
        "tfs": len(tfs),
        "targets": len(targets),
        "edges": len(positive),
        "steps": [args.steps, args.steps_stage2],
        "simulated_cells": args.cells,
        "genes_silent_in_simulated_cells": silent,
        "tf_targets": args.tf_targets,
        "levels": 1 + max(model.layout.levels.values()),
        "imposed": imposed.to_series().to_dict(),
        "negative_control": control.to_series().to_dict(),
        "real_cells_vs_imposed": real.to_series().to_dict(),
        "by_edge_kind": {
            name: result.by_edge_kind.to_dict(orient="index")
            for name, result in (
                ("imposed", imposed),
                ("negative_control", control),
                ("real_cells_vs_imposed", real),
            )
        },
        "seconds": round(time.perf_counter() - start, 1),
    }
    text = json.dumps(record, indent=2, default=float)
    print(text)
    if args.json:
        with open(args.json, "w") as f:
            f.write(text)
    if args.plot:
        import matplotlib

        matplotlib.use("Agg")
        gg.pl.pr_curve(
            {"imposed edges": imposed, "negative-control edges": control},
            show=False,
            save=args.plot,
        )
    return record


if __name__ == "__main__":
    main()
