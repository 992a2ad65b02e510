"""Deep AnnData comparison for the tests that check an input is left untouched."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd
import scipy.sparse as sp
from anndata import AnnData


def assert_same(a, b) -> None:
    """Recursive equality of AnnData parts (matrices, frames, dicts, scalars), types included."""
    assert type(a) is type(b), (type(a), type(b))
    if isinstance(a, pd.DataFrame):
        pd.testing.assert_frame_equal(a, b)
    elif sp.issparse(a) or isinstance(a, np.ndarray):
        assert a.shape == b.shape and a.dtype == b.dtype
        a, b = (x.toarray() if sp.issparse(x) else x for x in (a, b))
        np.testing.assert_array_equal(a, b)
    elif isinstance(a, Mapping):
        assert list(a) == list(b)
        for key in a:
            assert_same(a[key], b[key])
    else:
        assert a == b


def assert_anndata_equal(a: AnnData, b: AnnData) -> None:
    """Same shape, names, matrices (and their types), annotations, layers, embeddings, uns."""
    assert a.shape == b.shape
    assert list(a.obs_names) == list(b.obs_names)
    assert list(a.var_names) == list(b.var_names)
    assert_same(a.X, b.X)
    assert_same(a.obs, b.obs)
    assert_same(a.var, b.var)
    for part in ("layers", "obsm", "varm", "obsp", "varp", "uns"):
        assert_same(dict(getattr(a, part)), dict(getattr(b, part)))
    assert (a.raw is None) == (b.raw is None)
