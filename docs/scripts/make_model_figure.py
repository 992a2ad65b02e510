"""Draw the GRouNdGAN model figure of the documentation (``docs/_static/model.png``).

    python docs/scripts/make_model_figure.py            # writes docs/_static/model.png

Only matplotlib is needed; the figure is a diagram, not a result.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.patches import FancyArrowPatch, FancyBboxPatch  # noqa: E402

STATIC = Path(__file__).resolve().parents[1] / "_static"

COLORS = {
    "noise": "#eeeeee",
    "controller": "#c6dbef",
    "tf": "#6baed6",
    "target": "#fdae6b",
    "generator": "#fdd0a2",
    "lsn": "#d9d9d9",
    "critic": "#c7e9c0",
    "labeler": "#dadaeb",
    "real": "#ffffff",
}


def box(ax, x, y, w, h, text, color, *, fontsize=9, weight="normal", ls="-", lw=1.2, z=2):
    """A rounded box centred at (x, y) with a label."""
    patch = FancyBboxPatch(
        (x - w / 2, y - h / 2),
        w,
        h,
        boxstyle="round,pad=0.02,rounding_size=0.08",
        facecolor=color,
        edgecolor="#333333",
        linewidth=lw,
        linestyle=ls,
        zorder=z,
    )
    ax.add_patch(patch)
    ax.text(x, y, text, ha="center", va="center", fontsize=fontsize, weight=weight, zorder=z + 1)
    return patch


def arrow(ax, start, end, *, color="#333333", ls="-", rad=0.0, lw=1.3, style="-|>"):
    ax.add_patch(
        FancyArrowPatch(
            start,
            end,
            arrowstyle=style,
            mutation_scale=12,
            color=color,
            linewidth=lw,
            linestyle=ls,
            connectionstyle=f"arc3,rad={rad}",
            zorder=1,
        )
    )


def draw_generator(ax) -> None:
    """Causal controller -> TFs -> per-gene target generators -> LSN -> simulated cell."""
    # stage-2 generator frame
    frame = FancyBboxPatch(
        (0.15, 1.3),
        9.0,
        4.75,
        boxstyle="round,pad=0.02,rounding_size=0.15",
        facecolor="none",
        edgecolor="#777777",
        linestyle="--",
        linewidth=1.0,
        zorder=0,
    )
    ax.add_patch(frame)
    ax.text(0.3, 5.95, "generator (stage 2)", fontsize=9, color="#555555", va="top")

    box(ax, 1.0, 4.3, 1.2, 0.7, "noise\n$z \\sim N(0, I)$", COLORS["noise"], fontsize=8)
    box(
        ax,
        2.85,
        4.3,
        1.9,
        1.0,
        "causal controller\nMLP 256-512-1024\n(stage 1, then frozen)",
        COLORS["controller"],
        fontsize=8,
    )
    arrow(ax, (1.6, 4.3), (1.9, 4.3))

    # TF expression column
    tf_x, tf_ys = 4.55, [4.9, 4.4, 3.9]
    for y, name in zip(tf_ys, ("TF 1", "TF 2", "TF 3"), strict=True):
        box(ax, tf_x, y, 0.8, 0.36, name, COLORS["tf"], fontsize=8)
    ax.text(
        3.55, 5.25, "TF expression\n(controller's TF outputs, before LSN)", ha="center", fontsize=8
    )
    arrow(ax, (3.8, 4.3), (4.15, 4.3))

    # per-gene target generators with their regulators (the imposed GRN)
    gen_x, gen_ys = 6.35, [4.85, 4.0, 3.15, 2.3]
    regulators = [(0, 1), (1,), (0, 2), (1, 2)]
    for i, (y, regs) in enumerate(zip(gen_ys, regulators, strict=True)):
        box(
            ax,
            gen_x,
            y,
            1.45,
            0.62,
            f"MLP of gene {i + 1}\n+ its own noise",
            COLORS["generator"],
            fontsize=7.5,
        )
        for r in regs:
            arrow(ax, (tf_x + 0.4, tf_ys[r]), (gen_x - 0.73, y), color="#2171b5", lw=1.0)
    ax.text(
        gen_x,
        1.6,
        "target generators: one MLP per target gene\n(computed block-diagonally)",
        ha="center",
        fontsize=8,
    )
    ax.text(
        tf_x,
        3.2,
        "edges =\nimposed GRN\n(TF $\\rightarrow$ target\nonly)",
        ha="center",
        va="top",
        fontsize=7.5,
        color="#2171b5",
    )

    # LSN over [TFs, targets]
    box(
        ax,
        8.45,
        3.6,
        0.9,
        2.9,
        "LSN\n\n$x \\cdot \\frac{L}{\\sum x}$\n\nall genes",
        COLORS["lsn"],
        fontsize=8,
    )
    for y in gen_ys:
        arrow(ax, (gen_x + 0.73, y), (8.0, y))
    arrow(ax, (tf_x, 5.08), (8.3, 5.05), color="#2171b5", rad=-0.3, lw=1.0)
    ax.text(6.35, 5.72, "TFs pass on unchanged", ha="center", fontsize=7.5, color="#2171b5")


def draw_training(ax) -> None:
    """Critic on real vs simulated cells, labeler and anti-labeler on the targets."""
    box(ax, 10.35, 3.6, 1.2, 0.8, "simulated\ncell", COLORS["target"], fontsize=8.5, weight="bold")
    arrow(ax, (8.9, 3.6), (9.75, 3.6))
    box(ax, 10.35, 5.15, 1.2, 0.7, "real cell\n(training)", COLORS["real"], fontsize=8.5)

    box(
        ax,
        12.3,
        4.4,
        1.6,
        0.9,
        "critic\n1024-512-256\n(no BatchNorm)",
        COLORS["critic"],
        fontsize=8,
    )
    arrow(ax, (10.95, 3.7), (11.5, 4.25))
    arrow(ax, (10.95, 5.05), (11.5, 4.6))
    ax.text(12.3, 5.1, "Wasserstein loss\n+ gradient penalty", ha="center", fontsize=7.5)

    box(
        ax,
        12.3,
        2.55,
        1.6,
        0.8,
        "labeler\ntargets $\\rightarrow$ TFs\n(real + simulated)",
        COLORS["labeler"],
        fontsize=7.5,
    )
    box(
        ax,
        12.3,
        1.45,
        1.6,
        0.8,
        "anti-labeler\ntargets $\\rightarrow$ TFs\n(simulated only)",
        COLORS["labeler"],
        fontsize=7.5,
    )
    arrow(ax, (10.95, 3.45), (11.5, 2.6))
    arrow(ax, (10.95, 3.35), (11.5, 1.55))
    ax.text(
        10.0,
        0.75,
        "MSE of the predicted TFs: added to the generator's loss, so targets\n"
        "must carry information about their regulators",
        ha="center",
        fontsize=7.5,
    )


def draw_stage1(ax) -> None:
    """Stage 1: the causal controller is pretrained as a WGAN-GP on all genes."""
    ax.text(0.2, 0.95, "stage 1:", fontsize=8, weight="bold", va="center")
    box(ax, 2.0, 0.95, 1.6, 0.5, "controller + LSN", COLORS["controller"], fontsize=7.5)
    arrow(ax, (2.8, 0.95), (3.3, 0.95))
    box(ax, 4.2, 0.95, 1.6, 0.5, "its own critic", COLORS["critic"], fontsize=7.5)
    ax.text(5.15, 0.95, "WGAN-GP on all genes", fontsize=7.5, va="center")


def make_figure(out: Path, dpi: int = 150) -> Path:
    fig, ax = plt.subplots(figsize=(13.5, 5.6))
    ax.set_xlim(0, 13.3)
    ax.set_ylim(0.45, 6.2)
    ax.axis("off")
    draw_generator(ax)
    draw_training(ax)
    draw_stage1(ax)
    ax.set_title(
        "GRouNdGAN: simulated cells follow the imposed gene regulatory network", fontsize=11
    )
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=dpi, bbox_inches="tight", facecolor="white")
    plt.close(fig)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=STATIC / "model.png")
    parser.add_argument("--dpi", type=int, default=150)
    args = parser.parse_args()
    print(make_figure(args.out, args.dpi))


if __name__ == "__main__":
    main()
