"""Safe files: model directories, planted pickles, atomic writes, the checkpoint lock, bad input.

Every refusal is a one-line error naming the problem, and leaves inputs and files untouched.
"""

from __future__ import annotations

import hashlib
import json
import os
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch

import groundgan as gg
from groundgan import _files
from groundgan._validation import InvalidInputError
from groundgan.train import _checkpoints
from groundgan.train._checkpoints import Checkpointer, CheckpointLockedError

SHORT = dict(
    max_steps_stage1=2,
    max_steps_stage2=2,
    batch_size_stage1=16,
    batch_size_stage2=16,
    device="cpu",
    progress_bar=False,
    log_every=1,
)


class Planted:
    """Unpickling this object would create ``marker`` (if anything ran it)."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def one_line(err: pytest.ExceptionInfo) -> str:
    message = str(err.value)
    assert "\n" not in message, message
    return message


def snapshot(directory: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(directory.iterdir()) if p.is_file()}


@pytest.fixture
def adata(pbmc_grn_cells):
    cells, grn = pbmc_grn_cells
    gg.GroundGAN.setup_anndata(cells, grn=grn)
    return cells


@pytest.fixture
def fresh_cells(_pbmc_grn_cells_cached):
    """The same cells again, not set up."""
    return _pbmc_grn_cells_cached[0].copy()


@pytest.fixture
def trained(adata, tiny_model_kwargs):
    model = gg.GroundGAN(adata, **tiny_model_kwargs)
    model.train(**SHORT)
    return model


# model directories --------------------------------------------------------------------------
def test_save_load_roundtrip(trained, fresh_cells, tmp_path):
    trained.save(tmp_path / "m")
    assert {p.name for p in (tmp_path / "m").iterdir()} == {
        "manifest.json",
        "model.pt",
        "model.json",
        "var_names.csv",
        "grn.csv",
    }
    json.loads((tmp_path / "m" / "model.json").read_text())  # metadata is plain JSON
    fresh = fresh_cells
    assert "groundgan_setup_GroundGAN" not in fresh.uns
    loaded = gg.GroundGAN.load(tmp_path / "m", adata=fresh)
    assert loaded.steps_ == trained.steps_
    assert loaded.adata is fresh and "groundgan_setup_GroundGAN" in fresh.uns
    assert np.array_equal(loaded.sample(100, seed=1).X, trained.sample(100, seed=1).X)
    trained.save(tmp_path / "m", overwrite=True)


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a torch without CUDA")
def test_load_on_cuda_without_cuda_is_a_one_line_error(trained, tmp_path):
    trained.save(tmp_path / "model")
    with pytest.raises(InvalidInputError) as info:
        gg.GroundGAN.load(tmp_path / "model", device="cuda")
    assert "\n" not in str(info.value) and "device='cpu' or 'auto'" in str(info.value)
    assert gg.GroundGAN.load(tmp_path / "model", device="auto").steps_ == trained.steps_


@pytest.mark.filterwarnings("ignore:Detected pickle protocol:UserWarning")
@pytest.mark.parametrize("kind", ["torch.save", "pickle"])
def test_planted_pickle_as_model_weights_is_refused(trained, tmp_path, kind):
    trained.save(tmp_path / "m")
    marker = tmp_path / "marker"
    weights = tmp_path / "m" / "model.pt"
    if kind == "torch.save":
        torch.save({"controller.net.0.weight": Planted(marker)}, weights)
    else:
        weights.write_bytes(pickle.dumps(Planted(marker)))
    with pytest.raises(
        InvalidInputError, match="refused to load .*model.pt: not a plain weights file"
    ) as err:
        gg.GroundGAN.load(tmp_path / "m")
    one_line(err)
    assert not marker.exists()


def test_planted_pickle_as_checkpoint_is_refused(adata, tiny_model_kwargs, tmp_path):
    directory = tmp_path / "ck"
    gg.GroundGAN(adata, **tiny_model_kwargs).train(
        checkpoint_dir=directory, checkpoint_every=1, **SHORT
    )
    marker = tmp_path / "marker"
    planted = directory / "checkpoint-stage2-000000099.pt"
    torch.save({"format": _checkpoints.CHECKPOINT_FORMAT, "module": Planted(marker)}, planted)
    data = planted.read_bytes()
    manifest = {
        "format": _checkpoints.CHECKPOINT_FORMAT,
        "sha256": hashlib.sha256(data).hexdigest(),
        "size": len(data),
        "steps": {"stage1": 2, "stage2": 99},
    }
    planted.with_suffix(".json").write_text(json.dumps(manifest))
    model = gg.GroundGAN(adata, **tiny_model_kwargs)
    with pytest.raises(
        InvalidInputError, match="refused to load .*checkpoint-stage2-000000099"
    ) as err:
        model.train(checkpoint_dir=directory, **SHORT)
    one_line(err)
    assert not marker.exists()
    assert model.steps_ == {"stage1": 0, "stage2": 0}


def test_save_refuses_non_empty_directory(trained, tmp_path):
    target = tmp_path / "m"
    target.mkdir()
    (target / "notes.txt").write_text("mine")
    with pytest.raises(
        InvalidInputError, match="exists and is not empty; pass overwrite=True"
    ) as err:
        trained.save(target)
    one_line(err)
    assert snapshot(target) == {"notes.txt": b"mine"}
    (tmp_path / "file").write_text("x")
    with pytest.raises(InvalidInputError, match="is a file"):
        trained.save(tmp_path / "file")
    assert (tmp_path / "file").read_text() == "x"


def test_load_refuses_non_model_directories(trained, tmp_path):
    (tmp_path / "empty").mkdir()
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "data.csv").write_text("a,b\n1,2\n")
    (tmp_path / "file").write_text("x")
    cases = {
        "empty": "not a groundgan model directory \\(missing model.pt, model.json",
        "other": "not a groundgan model directory",
        "absent": "is not a directory",
        "file": "is not a directory",
    }
    for name, message in cases.items():
        with pytest.raises(InvalidInputError, match=message) as err:
            gg.GroundGAN.load(tmp_path / name)
        one_line(err)
    assert snapshot(tmp_path / "other") == {"data.csv": b"a,b\n1,2\n"}


def test_load_refuses_damaged_model_directories(trained, adata, tmp_path):
    trained.save(tmp_path / "m")
    (tmp_path / "m" / "model.json").write_text("{broken")
    with pytest.raises(InvalidInputError, match="unreadable groundgan model") as err:
        gg.GroundGAN.load(tmp_path / "m")
    one_line(err)
    other = gg.GroundGAN(
        adata,
        latent_dim=8,
        controller_hidden=(8,),
        critic_hidden=(8,),
        labeler_hidden=(8,),
        depth=1,
        width=1,
        sample_block_size=16,
    )
    other.save(tmp_path / "o")
    (tmp_path / "o" / "model.pt").write_bytes((tmp_path / "m" / "model.pt").read_bytes())
    with pytest.raises(InvalidInputError, match="does not hold the weights of the model") as err:
        gg.GroundGAN.load(tmp_path / "o")
    one_line(err)
    (tmp_path / "o" / "model.pt").write_bytes(b"\x00garbage")
    with pytest.raises(
        InvalidInputError, match="refused to load .*model.pt: not a plain weights file"
    ):
        gg.GroundGAN.load(tmp_path / "o")


def test_load_refuses_other_genes_and_leaves_adata_untouched(trained, fresh_cells, tmp_path):
    trained.save(tmp_path / "m")
    cells = fresh_cells
    fewer = cells[:, 2:].copy()
    X, uns = fewer.X.copy(), set(fewer.uns)
    with pytest.raises(
        InvalidInputError, match="genes differ.*missing from adata: " + cells.var_names[0]
    ) as err:
        gg.GroundGAN.load(tmp_path / "m", adata=fewer)
    one_line(err)
    assert set(fewer.uns) == uns and (fewer.X != X).nnz == 0
    shuffled = cells[:, ::-1].copy()
    with pytest.raises(InvalidInputError, match="same genes in another order"):
        gg.GroundGAN.load(tmp_path / "m", adata=shuffled)
    assert "groundgan_setup_GroundGAN" not in shuffled.uns


# training input ------------------------------------------------------------------------------
def test_train_refuses_too_few_cells(adata, tiny_model_kwargs, tmp_path):
    model = gg.GroundGAN(adata[:9].copy(), **tiny_model_kwargs)
    with pytest.raises(InvalidInputError, match="too few cells to train: 9 \\(at least 10") as err:
        model.train(checkpoint_dir=tmp_path / "ck", **SHORT)
    one_line(err)
    assert not (tmp_path / "ck").exists() and model.steps_ == {"stage1": 0, "stage2": 0}


def test_batch_shrinks_to_the_cells_with_a_warning(adata, tiny_model_kwargs):
    model = gg.GroundGAN(adata[:12].copy(), **tiny_model_kwargs)
    with pytest.warns(UserWarning, match="batch size 16 exceeds the 12 training cells; using 12"):
        model.train(**SHORT)
    assert model._runner.stages["stage1"].settings.batch_size == 12
    assert model._runner.stages["stage2"].settings.batch_size == 12
    assert model.steps_ == {"stage1": 2, "stage2": 2}


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"checkpoint_every": 0}, "checkpoint_every must be a positive integer"),
        ({"keep_checkpoints": 0}, "keep_checkpoints must be a positive integer"),
        ({"validate_every": -1, "validation_adata": "x"}, "validate_every must be a positive"),
    ],
)
def test_bad_checkpoint_arguments_create_nothing(
    adata, tiny_model_kwargs, tmp_path, changes, message
):
    model = gg.GroundGAN(adata, **tiny_model_kwargs)
    with pytest.raises(InvalidInputError, match=message) as err:
        model.train(checkpoint_dir=tmp_path / "ck", **SHORT, **changes)
    one_line(err)
    assert not (tmp_path / "ck").exists()


# atomic writes and the lock -------------------------------------------------------------------
def test_atomic_write_leaves_old_file_on_crash(tmp_path, monkeypatch):
    target = tmp_path / "f.bin"
    _files.atomic_write_bytes(target, b"old")

    def crash(*args):
        raise KeyboardInterrupt

    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(KeyboardInterrupt):
        _files.atomic_write_bytes(target, b"new")
    assert target.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["f.bin"]


def test_lock_is_exclusive_and_released(tmp_path):
    first = Checkpointer.open(tmp_path / "ck", 2)
    assert (tmp_path / "ck" / ".lock").read_text().strip() == str(os.getpid())
    with pytest.raises(CheckpointLockedError, match="another process .* is training into") as err:
        Checkpointer.open(tmp_path / "ck", 2)
    one_line(err)
    first.close()
    with Checkpointer.open(tmp_path / "ck", 2):
        pass


def test_open_tidies_interrupted_writes(tmp_path):
    directory = tmp_path / "ck"
    directory.mkdir()
    (directory / ".checkpoint-stage1-000000004.pt.123.tmp").write_bytes(b"half")
    (directory / "checkpoint-stage1-000000004.json").write_text("{}")
    (directory / ".best.old").mkdir()
    (directory / ".best.old" / "model.pt").write_bytes(b"x")
    with Checkpointer.open(directory, 2):
        pass
    assert sorted(p.name for p in directory.iterdir()) == [".lock", "best"]
    assert (directory / "best" / "model.pt").read_bytes() == b"x"


def test_checkpoint_dir_that_is_a_file_is_refused(adata, tiny_model_kwargs, tmp_path):
    (tmp_path / "ck").write_text("x")
    with pytest.raises(InvalidInputError, match="is a file, not a directory"):
        gg.GroundGAN(adata, **tiny_model_kwargs).train(checkpoint_dir=tmp_path / "ck", **SHORT)
    assert (tmp_path / "ck").read_text() == "x"
