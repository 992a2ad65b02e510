"""gg.tl.perturbation_effect: per-gene means, log2FC, changed cells, direct targets."""

from __future__ import annotations

import mudata
import numpy as np
import pandas as pd
import pytest
from mudata import MuData

import groundgan as gg
from groundgan._validation import InvalidInputError


@pytest.fixture(scope="module")
def perturbed(train_tiny_groundgan):
    """A briefly trained tiny model and a knockout plus a 3x overexpression of two TFs."""
    model, grn = train_tiny_groundgan(20)
    tf1, tf2 = grn["tf"].value_counts().index[:2]
    mdata = model.perturb([{tf1: 0.0}, {tf2: 3.0}], n_cells=100, seed=0, mode="scale")
    yield mdata, grn, (tf1, tf2)


def test_table_layout(perturbed):
    mdata, _, (tf1, tf2) = perturbed
    effect = gg.tl.perturbation_effect(mdata)
    genes = list(mdata.mod["control"].var_names)
    assert list(effect.columns) == [
        "perturbation",
        "gene",
        "mean_control",
        "mean_perturbed",
        "log2fc",
        "fraction_changed",
        "is_target",
        "is_perturbed_tf",
        "distance",
    ]
    assert len(effect) == 2 * len(genes)
    assert effect["perturbation"].unique().tolist() == [f"{tf1}*0", f"{tf2}*3"]
    assert effect.loc[effect["perturbation"] == f"{tf1}*0", "gene"].tolist() == genes


def test_values_match_the_cells(perturbed):
    mdata, grn, (_, tf2) = perturbed
    key = f"{tf2}*3"
    effect = gg.tl.perturbation_effect(mdata, key=key).set_index("gene")
    Xc = mdata.mod["control"].X.astype(np.float64)
    Xp = mdata.mod[key].X.astype(np.float64)
    np.testing.assert_allclose(effect["mean_control"], Xc.mean(0))
    np.testing.assert_allclose(effect["mean_perturbed"], Xp.mean(0))
    np.testing.assert_allclose(
        effect["log2fc"], np.log2((Xp.mean(0) + 1) / (Xc.mean(0) + 1)), rtol=1e-12
    )
    np.testing.assert_allclose(effect["fraction_changed"], (Xp != Xc).mean(0))
    targets = set(grn.loc[grn["tf"] == tf2, "target"])
    assert set(effect.index[effect["is_target"]]) == targets
    assert effect.index[effect["is_perturbed_tf"]].tolist() == [tf2]
    # a 3x overexpression: the TF's log2FC is close to log2(3) for an expressed TF
    assert effect.loc[tf2, "fraction_changed"] > 0
    others = effect[~effect["is_target"] & ~effect["is_perturbed_tf"]]
    assert (others["fraction_changed"] == 0).all() and (others["log2fc"] == 0).all()


def test_pseudocount(perturbed):
    mdata, _, (tf1, _) = perturbed
    key = f"{tf1}*0"
    effect = gg.tl.perturbation_effect(mdata, key=key, pseudocount=10.0)
    expected = np.log2((effect["mean_perturbed"] + 10) / (effect["mean_control"] + 10))
    np.testing.assert_allclose(effect["log2fc"], expected)
    tf_row = effect.set_index("gene").loc[tf1]
    assert tf_row["mean_perturbed"] == 0 and np.isfinite(tf_row["log2fc"])
    for bad in (0, -1, float("nan")):
        with pytest.raises(InvalidInputError, match="pseudocount"):
            gg.tl.perturbation_effect(mdata, pseudocount=bad)


def test_key_errors(perturbed):
    mdata, _, _ = perturbed
    with pytest.raises(InvalidInputError, match="'nope' not found"):
        gg.tl.perturbation_effect(mdata, key="nope")
    with pytest.raises(InvalidInputError, match="'control' not found"):
        gg.tl.perturbation_effect(mdata, key="control")
    with pytest.raises(InvalidInputError, match="expected the MuData"):
        gg.tl.perturbation_effect(mdata.mod["control"])


def _rebuilt(mdata: MuData, **changes) -> MuData:
    mods = {k: v.copy() for k, v in mdata.mod.items()}
    for key, fn in changes.items():
        fn(mods[key])
    out = MuData(mods, axis=1)
    out.uns.update(mdata.uns)
    return out


def test_rows_must_pair(perturbed):
    mdata, _, (tf1, _) = perturbed
    key = f"{tf1}*0"

    def shuffle(a):
        a.obs["cell"] = a.obs["cell"].to_numpy()[::-1]

    with mudata.set_options(pull_on_update=False):
        bad = _rebuilt(mdata, **{key: shuffle})
    with pytest.raises(InvalidInputError, match="do not pair"):
        gg.tl.perturbation_effect(bad, key=key)


def test_needs_control_and_metadata(perturbed):
    mdata, _, (tf1, _) = perturbed
    with mudata.set_options(pull_on_update=False):
        only = MuData({"x": mdata.mod[f"{tf1}*0"].copy()}, axis=1)
    with pytest.raises(InvalidInputError, match="no 'control' modality"):
        gg.tl.perturbation_effect(only)
    with mudata.set_options(pull_on_update=False):
        bare = MuData({k: v.copy() for k, v in mdata.mod.items()}, axis=1)
    for a in bare.mod.values():
        a.uns.pop("groundgan_grn", None)
    with pytest.raises(InvalidInputError, match="groundgan_grn"):
        gg.tl.perturbation_effect(bare)


def test_falls_back_to_modality_uns(perturbed):
    """A MuData re-assembled from the modalities alone still has what it needs."""
    mdata, _, _ = perturbed
    with mudata.set_options(pull_on_update=False):
        again = MuData({k: v.copy() for k, v in mdata.mod.items()}, axis=1)
    pd.testing.assert_frame_equal(
        gg.tl.perturbation_effect(again), gg.tl.perturbation_effect(mdata)
    )


def test_distances_in_a_bipartite_grn(perturbed):
    mdata, grn, (tf1, _) = perturbed
    effect = gg.tl.perturbation_effect(mdata, key=f"{tf1}*0").set_index("gene")
    targets = set(grn.loc[grn["tf"] == tf1, "target"])
    expected = [0 if g == tf1 else 1 if g in targets else -1 for g in effect.index]
    assert effect["distance"].tolist() == expected
    assert (effect["distance"] == 1).eq(effect["is_target"]).all()


def test_by_distance_summarises_the_gene_table(perturbed):
    mdata, _, (tf1, tf2) = perturbed
    genes = gg.tl.perturbation_effect(mdata)
    summary = gg.tl.perturbation_effect(mdata, by="distance")
    assert list(summary.columns) == [
        "perturbation",
        "distance",
        "n_genes",
        "n_changed",
        "mean_abs_log2fc",
        "max_abs_log2fc",
        "mean_fraction_changed",
    ]
    assert summary["perturbation"].tolist() == [f"{tf1}*0"] * 3 + [f"{tf2}*3"] * 3
    assert summary["distance"].tolist() == [0, 1, -1, 0, 1, -1]
    for row in summary.itertuples():
        rows = genes[
            (genes["perturbation"] == row.perturbation) & (genes["distance"] == row.distance)
        ]
        assert row.n_genes == len(rows)
        assert row.n_changed == int((rows["fraction_changed"] > 0).sum())
        assert row.mean_abs_log2fc == pytest.approx(rows["log2fc"].abs().mean())
        assert row.max_abs_log2fc == pytest.approx(rows["log2fc"].abs().max())
        assert row.mean_fraction_changed == pytest.approx(rows["fraction_changed"].mean())
    # genes the perturbed TF does not reach never change in the matched cells
    assert (summary.loc[summary["distance"] == -1, "n_changed"] == 0).all()


def test_by_distance_reaches_two_levels_in_a_cascade(train_tiny_cascade):
    model, _, tfs = train_tiny_cascade(20)
    mdata = model.perturb({tfs[0]: 0.0}, n_cells=100, seed=0)
    summary = gg.tl.perturbation_effect(mdata, by="distance").set_index("distance")
    assert {0, 1, 2, 3} <= set(summary.index)
    assert summary.loc[2, "n_changed"] > 0
    assert summary.loc[3, "n_changed"] > 0
    assert summary.loc[-1, "n_changed"] == 0


def test_by_must_name_a_layout(perturbed):
    mdata, _, _ = perturbed
    with pytest.raises(InvalidInputError, match="by must be"):
        gg.tl.perturbation_effect(mdata, by="level")
