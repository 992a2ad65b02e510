"""GroundGAN.setup_anndata: every bad input is a clear ValueError and leaves adata untouched."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import groundgan as gg
from anndata_checks import assert_anndata_equal
from groundgan.model._setup import SETUP_KEY


def test_setup_records_grn_and_library_size(pbmc_grn_cells):
    adata, grn = pbmc_grn_cells
    gg.GroundGAN.setup_anndata(adata, grn=grn)
    record = adata.uns[SETUP_KEY]
    assert record["library_size"] == pytest.approx(20_000)
    assert set(record["tfs"]) == set(grn["tf"])
    assert set(record["targets"]) == set(grn["target"])
    assert len(record["grn_tf"]) == len(grn)
    model = gg.GroundGAN(adata)
    assert model.module.n_tfs == 8 and model.module.n_targets == 52


def _dense(adata):
    adata.X = adata.X.toarray()
    return adata


def _set_value(adata, value):
    adata = _dense(adata)
    adata.X[0, 0] = value
    return adata


def _log_transform(adata):
    adata = _dense(adata)
    adata.X = np.log1p(adata.X)
    return adata


def _raw_counts(adata):
    adata.X = adata.layers["counts"].copy()
    return adata


def _duplicate_var(adata):
    names = list(adata.var_names)
    names[1] = names[0]
    adata.var_names = names
    return adata


BAD_DATA = {
    "negative": (lambda a: _set_value(a, -1.0), "negative"),
    "nan": (lambda a: _set_value(a, np.nan), "NaN"),
    "infinite": (lambda a: _set_value(a, np.inf), "infinite"),
    "log-transformed": (_log_transform, "log-transformed"),
    "un-normalised": (_raw_counts, "library size"),
    "duplicate var_names": (_duplicate_var, "duplicate"),
}


@pytest.mark.filterwarnings("ignore:Variable names are not unique")
@pytest.mark.parametrize("case", list(BAD_DATA))
def test_bad_data_is_refused(pbmc_grn_cells, case):
    adata, grn = pbmc_grn_cells
    make_bad, message = BAD_DATA[case]
    adata = make_bad(adata)
    before = adata.copy()
    with pytest.raises(ValueError, match=message):
        gg.GroundGAN.setup_anndata(adata, grn=grn)
    assert_anndata_equal(before, adata)


def _grn_missing_gene(grn):
    return pd.concat(
        [grn, pd.DataFrame({"tf": [grn.tf[0]], "target": ["NOT_A_GENE"], "importance": [1.0]})]
    )


def _grn_tf_cycle(grn):
    tfs = sorted(set(grn.tf))
    loop = pd.DataFrame({"tf": tfs[:2], "target": tfs[1::-1], "importance": [1.0, 1.0]})
    return pd.concat([grn, loop])


def _grn_self_loop(grn):
    t = grn.target.iloc[0]
    return pd.concat([grn, pd.DataFrame({"tf": [t], "target": [t], "importance": [1.0]})])


def _grn_duplicate(grn):
    return pd.concat([grn, grn.iloc[[0]]])


def _grn_drop_target(grn):
    """A target gene of the data that no longer has regulators (it is then outside the GRN)."""
    return grn[grn.target != grn.target.iloc[0]]


BAD_GRN = {
    "missing gene": (_grn_missing_gene, "NOT_A_GENE"),
    "tf cycle": (_grn_tf_cycle, "cycle: .* -> .* -> "),
    "self-loop": (_grn_self_loop, "self-loop"),
    "duplicate edge": (_grn_duplicate, "duplicate"),
    "target without regulators": (_grn_drop_target, "neither TF nor target.*gg.grn.subset"),
    "empty": (lambda g: g.iloc[:0], "empty"),
    "missing columns": (lambda g: g.rename(columns={"tf": "regulator"}), "columns"),
}


@pytest.mark.parametrize("case", list(BAD_GRN))
def test_bad_grn_is_refused(pbmc_grn_cells, case):
    adata, grn = pbmc_grn_cells
    make_bad, message = BAD_GRN[case]
    before = adata.copy()
    with pytest.raises(ValueError, match=message):
        gg.GroundGAN.setup_anndata(adata, grn=make_bad(grn))
    assert_anndata_equal(before, adata)


def test_missing_layer_is_named(pbmc_grn_cells):
    adata, grn = pbmc_grn_cells
    with pytest.raises(ValueError, match="layer 'normalised' not found"):
        gg.GroundGAN.setup_anndata(adata, grn=grn, layer="normalised")


def test_model_needs_setup(pbmc_grn_cells):
    adata, _ = pbmc_grn_cells
    with pytest.raises(ValueError, match="setup_anndata"):
        gg.GroundGAN(adata)


def test_layer_is_used(pbmc_grn_cells):
    adata, grn = pbmc_grn_cells
    adata.layers["normalised"] = adata.X.copy()
    adata.X = adata.layers["counts"].copy()
    gg.GroundGAN.setup_anndata(adata, grn=grn, layer="normalised")
    assert adata.uns[SETUP_KEY]["layer"] == "normalised"
