"""groundgan.grn._arboreto: GRNBoost2 and GENIE3 give arboreto's own importances."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

import groundgan as gg
from groundgan.grn._arboreto import shipped_matrix


def _arboreto_importances(cells, tfs, target, method, seed):
    """``arboreto.core.infer_partial_network`` on the matrix arboreto's own API builds."""
    from arboreto import core

    X = cells.X.toarray() if sp.issparse(cells.X) else np.asarray(cells.X)
    genes = list(cells.var_names)
    tf_matrix, tf_names = core.to_tf_matrix(X, genes, set(tfs))
    regressor, kwargs = {"grnboost2": ("GBM", core.SGBM_KWARGS), "genie3": ("RF", core.RF_KWARGS)}[
        method
    ]
    links = core.infer_partial_network(
        regressor, kwargs, tf_matrix, tf_names, target, X[:, genes.index(target)], seed=seed
    )
    return links.set_index("TF")["importance"].sort_index()


@pytest.mark.parametrize(("method", "n_targets"), [("grnboost2", 4), ("genie3", 2)])
def test_importances_equal_arboretos(pbmc_train, human_tfs, client, method, n_targets):
    assert pbmc_train.X.dtype == np.float32  # arboreto sees exactly the values shipped
    tfs_present = [g for g in pbmc_train.var_names if g in set(human_tfs)]
    # ordinary genes and TFs (a TF is removed from its own predictors)
    targets = [g for g in pbmc_train.var_names if g not in set(human_tfs)][: n_targets - 1]
    targets.append(tfs_present[0])
    seed = 11
    table = gg.grn.importance_table(
        pbmc_train,
        human_tfs,
        method=method,
        targets=targets,
        seed=seed,
        client=client,
        progress=False,
    )
    for target in targets:
        expected = _arboreto_importances(pbmc_train, human_tfs, target, method, seed)
        ours = table[table["target"] == target].set_index("tf")["importance"].sort_index()
        assert len(expected) > 0
        assert list(ours.index) == list(expected.index), target
        np.testing.assert_allclose(ours.to_numpy(), expected.to_numpy(), rtol=1e-12, atol=0)


def test_one_seed_for_every_target(pbmc_train, human_tfs, client):
    """A target's importances do not depend on which other targets run (arboreto's rule)."""
    genes = list(pbmc_train.var_names)
    alone = gg.grn.importance_table(
        pbmc_train, human_tfs, targets=genes[5:6], seed=3, client=client, progress=False
    )
    among = gg.grn.importance_table(
        pbmc_train, human_tfs, targets=genes[:8], seed=3, client=client, progress=False
    )
    expected = among[among["target"] == genes[5]].reset_index(drop=True)
    np.testing.assert_array_equal(alone["importance"], expected["importance"])


def test_shipped_matrix_is_float32_and_sparse_only_where_smaller():
    rng = np.random.default_rng(0)
    mostly_zero = sp.random(200, 50, density=0.05, format="csr", random_state=0, dtype=np.float64)
    shipped = shipped_matrix(mostly_zero)
    assert sp.isspmatrix_csc(shipped) and shipped.dtype == np.float32
    np.testing.assert_array_equal(shipped.toarray(), mostly_zero.toarray().astype(np.float32))

    full = sp.csr_matrix(rng.gamma(1.0, size=(200, 50)))
    shipped = shipped_matrix(full)
    assert isinstance(shipped, np.ndarray) and shipped.dtype == np.float32
    np.testing.assert_array_equal(shipped, full.toarray().astype(np.float32))

    dense = rng.gamma(1.0, size=(20, 5))
    shipped = shipped_matrix(dense)
    assert isinstance(shipped, np.ndarray) and shipped.dtype == np.float32
    assert shipped.flags.f_contiguous  # targets are read column by column
