"""groundgan._files: atomic writes, pickle-free weights, save-directory and gene checks."""

from __future__ import annotations

import pickle

import pytest
import torch
from torch import nn

import groundgan as gg
from groundgan._files import (
    atomic_write_bytes,
    check_same_genes,
    check_save_dir,
    load_module_state,
    load_weights,
    torch_bytes,
)
from groundgan._validation import InvalidInputError


def test_check_save_dir(tmp_path):
    check_save_dir(tmp_path / "new", overwrite=False)  # absent: fine
    check_save_dir(tmp_path, overwrite=False)  # empty: fine
    (tmp_path / "model.json").write_text("{}")
    with pytest.raises(InvalidInputError, match="not empty; pass overwrite=True"):
        check_save_dir(tmp_path, overwrite=False)
    check_save_dir(tmp_path, overwrite=True)
    with pytest.raises(InvalidInputError, match="it is a file, not a directory"):
        check_save_dir(tmp_path / "model.json", overwrite=True)


def test_check_same_genes_names_the_difference():
    adata = gg.datasets.pbmc68k_reduced()[:, :5].copy()
    genes = list(adata.var_names)
    check_same_genes(adata, genes)
    with pytest.raises(
        InvalidInputError, match=f"missing from adata: GENE_X.*not in the model: {genes[0]}"
    ):
        check_same_genes(adata, [*genes[1:], "GENE_X"])
    with pytest.raises(InvalidInputError, match="another order"):
        check_same_genes(adata, genes[::-1])
    with pytest.raises(InvalidInputError, match="must be an AnnData"):
        check_same_genes(adata.to_df(), genes)


def test_weights_round_trip_and_mismatch_named(tmp_path):
    net = nn.Linear(3, 2)
    path = tmp_path / "model.pt"
    atomic_write_bytes(path, torch_bytes(net.state_dict()))
    other = nn.Linear(3, 2)
    load_module_state(other, path, "model.json")
    assert torch.equal(other.weight, net.weight)
    with pytest.raises(
        InvalidInputError, match="does not hold the weights of the model described by model.json"
    ):
        load_module_state(nn.Linear(4, 2), path, "model.json")


def test_planted_pickle_is_refused_and_not_run(tmp_path):
    class Planted:
        def __reduce__(self):
            return (print, ("ran",))

    path = tmp_path / "model.pt"
    path.write_bytes(pickle.dumps(Planted(), protocol=2))
    with pytest.raises(InvalidInputError, match="refused to load"):
        load_weights(path, path)
