"""gg.pl.perturbation: split violins and a log2FC heatmap, direct targets highlighted."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
from matplotlib.collections import PolyCollection  # noqa: E402
from matplotlib.lines import Line2D  # noqa: E402

import groundgan as gg  # noqa: E402
from groundgan._validation import InvalidInputError  # noqa: E402
from groundgan.pl._perturbation import TARGET_COLOR  # noqa: E402


@pytest.fixture(scope="module")
def perturbed(train_tiny_groundgan):
    """A briefly trained tiny model; a knockout of the hub TF and a double knockout."""
    model, grn = train_tiny_groundgan(20)
    tf1, tf2 = grn["tf"].value_counts().index[:2]
    mdata = model.perturb([{tf1: 0.0}, {tf1: 0.0, tf2: 0.0}], n_cells=120, seed=0)
    yield mdata, grn, (tf1, tf2)


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


def by_gid(ax, gid):
    return [a for a in ax.get_children() if a.get_gid() == gid]


def tick_texts(ax):
    return [t.get_text() for t in ax.get_xticklabels()]


def test_violin_defaults(perturbed):
    mdata, grn, (tf1, _) = perturbed
    key = f"{tf1}=0"
    ax = gg.pl.perturbation(mdata, show=False)
    effect = gg.tl.perturbation_effect(mdata, key=key).set_index("gene")
    genes = tick_texts(ax)
    targets = set(grn.loc[grn["tf"] == tf1, "target"])
    # 6 targets with the largest |log2FC| first, then 2 non-targets
    assert len(genes) == 8
    assert set(genes[:6]) <= targets and not set(genes[6:]) & (targets | {tf1})
    top = effect[effect["is_target"]]["log2fc"].abs().sort_values(ascending=False)
    assert genes[:6] == list(top.index[:6])
    # one control and one perturbed half violin per gene, shaded spans for the targets
    assert len(by_gid(ax, "control")) == len(by_gid(ax, "perturbed")) == 8
    assert len(by_gid(ax, "target")) == 6
    for label in ax.get_xticklabels():
        is_target = label.get_text() in targets
        assert (label.get_color() == TARGET_COLOR) == is_target
        assert (label.get_fontweight() == "bold") == is_target
    legend = [t.get_text() for t in ax.get_legend().get_texts()]
    assert legend == ["control", key, "direct target"]
    assert ax.get_title() == f"{key} vs control"
    assert ax.get_ylabel() == "log1p(expression)"


def test_violin_draws_the_values(perturbed):
    """The control half spans the log1p range of the gene's control values; a knocked-out TF
    (constant 0) is a flat bar at 0 on the perturbed side."""
    mdata, _, (tf1, _) = perturbed
    gene = mdata.mod["control"].var_names[-1]
    ax = gg.pl.perturbation(mdata, genes=[gene, tf1], show=False)
    control = by_gid(ax, "control")[0]
    assert isinstance(control, PolyCollection)
    y = control.get_paths()[0].vertices[:, 1]
    values = np.log1p(mdata.mod["control"][:, gene].X.ravel())
    assert np.isclose(y.min(), values.min()) and np.isclose(y.max(), values.max())
    knocked = by_gid(ax, "perturbed")[1]
    assert isinstance(knocked, Line2D) and set(knocked.get_ydata()) == {0.0}
    assert tick_texts(ax) == [gene, tf1]
    assert not by_gid(ax, "target") and len(ax.get_legend().get_texts()) == 2


def test_violin_key_linear_axes_and_save(perturbed, tmp_path):
    mdata, _, (tf1, tf2) = perturbed
    key = f"{tf1}=0,{tf2}=0"
    _, own = plt.subplots()
    path = tmp_path / "violin.png"
    ax = gg.pl.perturbation(mdata, key=key, log=False, ax=own, show=False, save=path)
    assert ax is own and path.stat().st_size > 0
    assert ax.get_title() == f"{key} vs control" and ax.get_ylabel() == "expression"
    top = by_gid(ax, "control")[0].get_paths()[0].vertices[:, 1].max()
    gene = tick_texts(ax)[0]
    assert np.isclose(top, mdata.mod["control"][:, gene].X.max())


def test_heatmap(perturbed):
    mdata, grn, (tf1, tf2) = perturbed
    keys = [f"{tf1}=0", f"{tf1}=0,{tf2}=0"]
    genes = [tf1, *grn.loc[grn["tf"] == tf2, "target"][:3], mdata.mod["control"].var_names[0]]
    genes = list(dict.fromkeys(genes))
    ax = gg.pl.perturbation(mdata, genes=genes, kind="heatmap", show=False)
    (image,) = ax.get_images()
    effect = gg.tl.perturbation_effect(mdata).set_index(["perturbation", "gene"])
    expected = effect["log2fc"].unstack("gene").loc[keys, genes].to_numpy()
    np.testing.assert_allclose(image.get_array(), expected)
    assert [t.get_text() for t in ax.get_yticklabels()] == keys
    assert tick_texts(ax) == genes
    n_targets = int(effect["is_target"].unstack("gene").loc[keys, genes].to_numpy().sum())
    assert len(by_gid(ax, "target")) == n_targets > 0
    assert len(by_gid(ax, "tf")) == 2  # tf1 perturbed in both rows
    assert image.norm.vmin == -image.norm.vmax


def test_heatmap_single_key(perturbed):
    mdata, _, (tf1, _) = perturbed
    ax = gg.pl.perturbation(mdata, kind="heatmap", key=f"{tf1}=0", show=False)
    assert ax.get_images()[0].get_array().shape == (1, 8)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"genes": ["NOPE"]}, "genes not found in mdata: NOPE"),
        ({"genes": []}, "genes is empty"),
        ({"kind": "bar"}, "unknown kind 'bar'"),
        ({"key": "X=1"}, "'X=1' not found"),
    ],
)
def test_errors(perturbed, kwargs, match):
    with pytest.raises(InvalidInputError, match=match):
        gg.pl.perturbation(perturbed[0], show=False, **kwargs)
