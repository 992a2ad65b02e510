"""gg.grn.validate: every refusal names the offending genes and leaves the input untouched."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import groundgan as gg


def _grn(**columns) -> pd.DataFrame:
    base = {"tf": ["Spi1", "Spi1", "Gata1"], "target": ["Lyz2", "Cd74", "Hba-a1"]}
    base.update(columns)
    return pd.DataFrame(base)


def _check_refused(grn: pd.DataFrame, match: str, adata=None) -> None:
    before = grn.copy(deep=True)
    with pytest.raises(ValueError, match=match):
        gg.grn.validate(grn, adata)
    pd.testing.assert_frame_equal(grn, before)


def test_valid_grn_is_normalised():
    grn = _grn(importance=[3, 2, 1], extra=["a", "b", "c"])
    grn.index = [10, 11, 12]
    out = gg.grn.validate(grn)
    assert list(out.columns) == ["tf", "target", "importance"]
    assert out["importance"].dtype == np.float64
    assert list(out.index) == [0, 1, 2]
    assert out["tf"].map(type).eq(str).all()
    assert "extra" in grn.columns  # the input keeps its columns

    no_importance = gg.grn.validate(_grn())
    assert list(no_importance.columns) == ["tf", "target"]


def test_names_are_strings():
    out = gg.grn.validate(pd.DataFrame({"tf": [1, 1], "target": [2, 3]}))
    assert out["tf"].tolist() == ["1", "1"] and out["target"].tolist() == ["2", "3"]


def test_missing_columns_name_what_was_found():
    _check_refused(
        pd.DataFrame({"TF": ["A"], "target": ["B"]}), r"missing \['tf'\], found \['TF', 'target'\]"
    )
    _check_refused(pd.DataFrame({"regulator": ["A"], "gene": ["B"]}), "'tf' and 'target'")


def test_empty_grn():
    _check_refused(pd.DataFrame({"tf": [], "target": []}), "empty")


def test_empty_names():
    _check_refused(_grn(tf=["Spi1", None, "Gata1"]), r"'tf' is empty in rows 1")
    _check_refused(_grn(target=["Lyz2", " ", "Hba-a1"]), r"'target' is empty in rows 1")


def test_self_loops():
    _check_refused(_grn(target=["Spi1", "Cd74", "Hba-a1"]), "self-loops.*Spi1")


def test_duplicate_edges():
    _check_refused(
        _grn(tf=["Spi1", "Spi1", "Spi1"], target=["Lyz2", "Lyz2", "Cd74"]),
        "duplicate edges: Spi1->Lyz2",
    )


def test_tf_regulating_a_tf_is_a_cascade():
    # Gata1 -> Spi1 makes Spi1 a regulated TF: a two-level cascade, accepted
    table = gg.grn.validate(_grn(target=["Lyz2", "Cd74", "Spi1"]))
    assert ("Gata1", "Spi1") in set(zip(table.tf, table.target, strict=True))


@pytest.mark.parametrize(
    ("tf", "target", "cycle"),
    [
        (["Spi1", "Gata1"], ["Gata1", "Spi1"], "Gata1 -> Spi1 -> Gata1"),
        (["A", "B", "C", "C"], ["B", "C", "A", "D"], "A -> B -> C -> A"),
        (["A", "B", "C", "D", "E"], ["B", "C", "D", "E", "C"], "C -> D -> E -> C"),
    ],
)
def test_a_cycle_is_named(tf, target, cycle):
    _check_refused(pd.DataFrame({"tf": tf, "target": target}), f"cycle: {cycle}")


def test_levels_of_a_cascade(caplog):
    grn = pd.DataFrame({"tf": ["A", "A", "B", "C", "B"], "target": ["B", "C", "C", "x", "y"]})
    levels = gg.grn.levels(grn)
    assert levels.to_dict() == {"A": 0, "B": 1, "C": 2, "y": 2, "x": 3}
    assert list(levels.index) == ["A", "B", "C", "y", "x"]
    with caplog.at_level("INFO", logger="groundgan"):
        gg.grn.validate(grn)
    assert "4 levels (level 0: 1 genes, level 1: 1 genes, level 2: 2 genes" in caplog.text


def test_levels_of_a_bipartite_grn():
    levels = gg.grn.levels(_grn())
    assert set(levels[levels == 0].index) == set(_grn().tf)
    assert set(levels[levels == 1].index) == set(_grn().target)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_importance(bad):
    _check_refused(_grn(importance=[1.0, bad, 0.5]), "NaN or infinite.*Spi1->Cd74")


def test_non_numeric_importance():
    _check_refused(_grn(importance=["high", "low", "mid"]), "not numeric")


def test_genes_must_be_in_adata(pbmc_counts):
    grn = pd.DataFrame({"tf": ["SPI1", "NOT_A_TF"], "target": ["CD74", "NOT_A_GENE"]})
    _check_refused(grn, "2 GRN genes are not in adata.var_names: NOT_A_TF, NOT_A_GENE", pbmc_counts)
    ok = pd.DataFrame({"tf": [pbmc_counts.var_names[0]], "target": [pbmc_counts.var_names[1]]})
    assert len(gg.grn.validate(ok, pbmc_counts)) == 1


def test_not_a_dataframe():
    with pytest.raises(TypeError, match="DataFrame"):
        gg.grn.validate({"tf": ["A"], "target": ["B"]})
