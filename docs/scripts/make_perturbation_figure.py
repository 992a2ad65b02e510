"""Make the figure of docs/perturbation.md: an SPI1 knockout on the embedded PBMC cells.

A short training budget (under half an hour on one CPU core), not the paper's: the figure
shows the mechanics of exact-replay perturbation, not a converged model.

    python docs/scripts/make_perturbation_figure.py            # writes docs/_static/*.png
    python docs/scripts/make_perturbation_figure.py --steps1 200 --steps2 200   # a quick look
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402
import torch  # noqa: E402

import groundgan as gg  # noqa: E402

STATIC = Path(__file__).resolve().parents[1] / "_static"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps1", type=int, default=2000, help="stage-1 steps")
    parser.add_argument("--steps2", type=int, default=1500, help="stage-2 steps")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    parser.add_argument("--out", type=Path, default=STATIC / "perturbation_knockout.png")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    start = time.perf_counter()

    adata = gg.datasets.pbmc68k_reduced()
    gg.pp.preprocess(adata, n_top_genes=300)
    tfs = gg.datasets.tf_list("human")
    grn = gg.grn.infer(adata, tfs=tfs, k=5, method="grnboost2", seed=0, progress=False)
    cells = gg.grn.subset(adata, grn)
    gg.GroundGAN.setup_anndata(cells, grn=grn)
    model = gg.GroundGAN(
        cells,
        latent_dim=32,
        controller_hidden=(128, 256),
        critic_hidden=(256, 128),
        labeler_hidden=(128, 128),
        sample_block_size=256,
    )
    print(model)
    model.train(
        max_steps_stage1=args.steps1,
        max_steps_stage2=args.steps2,
        batch_size_stage1=128,
        batch_size_stage2=256,
        progress_bar=False,
        device="cpu",
    )

    mdata = model.perturb([{"SPI1": 0.0}, {"SPI1": 0.0, "IRF8": 0.0}], n_cells=1000, seed=0)
    effect = gg.tl.perturbation_effect(mdata)
    with pd.option_context("display.width", 120, "display.precision", 3):
        print(mdata)
        print(
            effect.query("perturbation == 'SPI1=0' and is_target")
            .sort_values("log2fc", key=abs, ascending=False)
            .head(8)
            .to_string(index=False)
        )
        role = effect["is_perturbed_tf"].map({True: "perturbed TF", False: "other"})
        role[effect["is_target"]] = "direct target"
        summary = effect.groupby(["perturbation", role.rename("role")])["fraction_changed"]
        print("fraction of changed cells per gene (max):")
        print(summary.max().unstack().to_string())

    fig, axes = plt.subplots(
        1, 2, figsize=(12, 3.8), gridspec_kw={"width_ratios": [1.25, 1]}, layout="constrained"
    )
    ax = gg.pl.perturbation(mdata, key="SPI1=0", ax=axes[0], show=False)
    genes = [label.get_text() for label in ax.get_xticklabels()]  # the default choice
    gg.pl.perturbation(mdata, genes=genes, kind="heatmap", ax=axes[1], show=False)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.out, dpi=110)
    print(f"wrote {args.out} in {time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main()
