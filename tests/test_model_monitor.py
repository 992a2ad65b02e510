"""Validation during training: history rows, the best model on disk, resume, bad input."""

from __future__ import annotations

import json
import shutil
from types import SimpleNamespace

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import torch

import groundgan as gg
from groundgan._validation import InvalidInputError
from groundgan.model._monitor import validation_matrix
from groundgan.train._runner import is_better

TRAIN = dict(
    max_steps_stage1=4,
    max_steps_stage2=8,
    batch_size_stage1=32,
    batch_size_stage2=32,
    device="cpu",
    progress_bar=False,
    log_every=4,
    seed=1,
)


@pytest.fixture
def split(pbmc_grn_cells):
    """600 training cells (set up) and 100 validation cells."""
    cells, grn = pbmc_grn_cells
    train, validation = cells[:600].copy(), cells[600:].copy()
    gg.GroundGAN.setup_anndata(train, grn=grn)
    return train, validation


def run(split, kwargs, **train_kwargs):
    model = gg.GroundGAN(split[0], **kwargs)
    model.train(**{**TRAIN, **train_kwargs})
    return model


def test_validation_history_and_best_model(split, tiny_model_kwargs, tmp_path):
    directory = tmp_path / "ck"
    model = run(
        split,
        tiny_model_kwargs,
        validation_adata=split[1],
        validate_every=3,
        checkpoint_dir=directory,
        checkpoint_every=4,
    )
    history = model.validation_history_
    assert list(history.columns) == ["stage", "step", "euclidean", "rf_auroc"]
    assert history["stage"].tolist() == ["stage2"] * 3  # stage-1 steps are not validated
    assert history["step"].tolist() == [3, 6, 8]  # every 3 steps and after the last one
    assert np.isfinite(history["euclidean"]).all() and history["rf_auroc"].between(0, 1).all()
    # the last row is the final model: the figures are gg.tl's on as many cells as validation
    sim = model.sample(100, seed=TRAIN["seed"])
    assert history["euclidean"].iloc[-1] == gg.tl.centroid_distance(
        split[1], sim, metric="euclidean"
    )
    # the best model so far is kept as a model directory
    rank = list(zip(history["euclidean"], (history["rf_auroc"] - 0.5).abs(), strict=True))
    best_row = history.iloc[int(np.argmin([r[0] for r in rank]))]
    record = json.loads((directory / "best" / "validation.json").read_text())
    assert record["step"] == best_row["step"] and record["euclidean"] == best_row["euclidean"]
    best = gg.GroundGAN.load(directory / "best")
    assert best.steps_ == {"stage1": 4, "stage2": int(best_row["step"])}
    assert not [p for p in directory.iterdir() if p.name.startswith(".best")]


def test_validation_does_not_change_training(split, tiny_model_kwargs):
    plain = run(split, tiny_model_kwargs)
    watched = run(split, tiny_model_kwargs, validation_adata=split[1], validate_every=2)
    assert len(watched.validation_history_) == 4 and plain.validation_history_.empty
    for key, value in plain.module.state_dict().items():
        assert torch.equal(value, watched.module.state_dict()[key]), key


def test_resumed_run_continues_the_validation_history(split, tiny_model_kwargs, tmp_path):
    settings = dict(
        validation_adata=split[1], validate_every=2, checkpoint_every=2, keep_checkpoints=100
    )
    reference = run(split, tiny_model_kwargs, checkpoint_dir=tmp_path / "a", **settings)
    (tmp_path / "b").mkdir()
    for name in ("checkpoint-stage2-000000004.pt", "checkpoint-stage2-000000004.json"):
        shutil.copy(tmp_path / "a" / name, tmp_path / "b" / name)
    resumed = run(split, tiny_model_kwargs, checkpoint_dir=tmp_path / "b", **settings)
    pd.testing.assert_frame_equal(resumed.validation_history_, reference.validation_history_)
    record = json.loads((tmp_path / "b" / "best" / "validation.json").read_text())
    assert record == json.loads((tmp_path / "a" / "best" / "validation.json").read_text())


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda v: v[:, 3:].copy(), "validation_adata lacks 3 of the model's genes"),
        (lambda v: v[:5].copy(), "validation_adata has 5 cells; at least 10"),
        (lambda v: v.to_df(), "validation_adata must be an AnnData"),
    ],
)
def test_bad_validation_data_is_refused(split, tiny_model_kwargs, tmp_path, make, message):
    model = gg.GroundGAN(split[0], **tiny_model_kwargs)
    validation = make(split[1])
    with pytest.raises(InvalidInputError, match=message) as err:
        model.train(**TRAIN, validation_adata=validation, checkpoint_dir=tmp_path / "ck")
    assert "\n" not in str(err.value)
    assert not (tmp_path / "ck").exists() and model.steps_ == {"stage1": 0, "stage2": 0}


def test_missing_genes_are_named(split, tiny_model_kwargs):
    model = gg.GroundGAN(split[0], **tiny_model_kwargs)
    with pytest.raises(InvalidInputError, match=str(split[1].var_names[0])):
        validation_matrix(model.layout.var_names, None, split[1][:, 1:].copy(), seed=0)


def test_validation_cells_are_aligned_and_capped(split, tiny_model_kwargs):
    model = gg.GroundGAN(split[0], **tiny_model_kwargs)
    genes = model.layout.var_names
    validation = split[1]
    shuffled = validation[:, ::-1].copy()
    assert np.array_equal(
        validation_matrix(genes, None, shuffled, 0), validation_matrix(genes, None, validation, 0)
    )
    many = ad.concat([validation] * 11, index_unique="-")
    capped = validation_matrix(genes, None, many, seed=0)
    assert capped.shape == (1000, validation.n_vars)
    assert np.array_equal(capped, validation_matrix(genes, None, many, seed=0))


def test_stage1_calls_are_skipped(split, tiny_model_kwargs):
    model = gg.GroundGAN(split[0], **tiny_model_kwargs)
    hook = model._runner.validation_hook("stage2", lambda: {"euclidean": 1.0}, None, None)
    hook(SimpleNamespace(name="stage1"), 10)
    assert model.validation_history_.empty


def test_best_is_lowest_euclidean_then_auroc_nearest_half():
    history = [{"euclidean": 5.0, "rf_auroc": 0.6}, {"euclidean": 3.0, "rf_auroc": 0.7}]
    assert is_better({"euclidean": 2.0, "rf_auroc": 0.9}, history)
    assert not is_better({"euclidean": 4.0, "rf_auroc": 0.5}, history)
    assert is_better({"euclidean": 3.0, "rf_auroc": 0.45}, history)
    assert not is_better({"euclidean": 3.0, "rf_auroc": 0.2}, history)
    assert is_better({"euclidean": 9.0, "rf_auroc": 1.0}, [])
