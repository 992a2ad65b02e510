"""Crash-safe, resumable training: kill a run with SIGKILL, resume it, get the same bits.

The reference is one uninterrupted run; interrupted runs (killed in a subprocess at a known
step, or resumed from a copy of some of the reference's checkpoints) must end with weights
that are bitwise identical to it.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

import groundgan as gg
from groundgan.model._io import model_fingerprint
from groundgan.train import GroundGANStage, NonFiniteLossError, TrainingInterrupted, WGANGPStage
from groundgan.train._checkpoints import Checkpointer, CheckpointLockedError, verify
from groundgan.train._runner import Checkpoints

WORKER = Path(__file__).with_name("resume_worker.py")
# tests/conftest.py's tiny_model_kwargs (a module-scoped reference run cannot use that fixture)
TINY = dict(
    latent_dim=16,
    controller_hidden=[32, 64],
    critic_hidden=[64, 32],
    labeler_hidden=[32, 32],
    depth=2,
    width=2,
    sample_block_size=64,
)
TRAIN = dict(
    max_steps_stage1=24,
    max_steps_stage2=24,
    batch_size_stage1=32,
    batch_size_stage2=32,
    checkpoint_every=4,
    log_every=4,
    device="cpu",
    seed=3,
    progress_bar=False,
)


@contextmanager
def deterministic():
    """One thread and deterministic kernels, as in the worker (restored afterwards)."""
    threads, strict = torch.get_num_threads(), torch.are_deterministic_algorithms_enabled()
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    try:
        yield
    finally:
        torch.set_num_threads(threads)
        torch.use_deterministic_algorithms(strict)


def new_model(cells):
    adata, grn = cells[0].copy(), cells[1].copy()
    gg.GroundGAN.setup_anndata(adata, grn=grn)
    return gg.GroundGAN(adata, **TINY)


def train(model, checkpoint_dir, **changes):
    with deterministic():
        model.train(checkpoint_dir=checkpoint_dir, **{**TRAIN, **changes})
    return model


def assert_same_weights(state: dict, reference: dict) -> None:
    assert state.keys() == reference.keys()
    differ = [k for k in reference if not torch.equal(state[k].cpu(), reference[k])]
    assert not differ, f"weights differ from the uninterrupted run: {differ[:5]}"


def names(directory: Path) -> list[str]:
    return [p.name for p in Checkpointer(directory, 1, None).checkpoints()]


@pytest.fixture(scope="module")
def cells(_pbmc_grn_cells_cached):
    return _pbmc_grn_cells_cached


@pytest.fixture(scope="module")
def reference(cells, tmp_path_factory):
    """The uninterrupted run, all of its checkpoints kept."""
    directory = tmp_path_factory.mktemp("reference")
    model = train(new_model(cells), directory, keep_checkpoints=100)
    state = {k: v.detach().clone() for k, v in model.module.state_dict().items()}
    return {"state": state, "dir": directory, "steps": dict(model.steps_), "model": model}


@pytest.fixture(scope="module")
def worker_files(cells, tmp_path_factory):
    """The training cells and GRN as files for the worker process."""
    directory = tmp_path_factory.mktemp("worker")
    adata, grn = cells
    adata.write_h5ad(directory / "cells.h5ad")
    grn.to_csv(directory / "grn.csv", index=False)
    return directory


def start_worker(files: Path, tmp_path: Path, checkpoint_dir: Path, pause_at=None, out=None):
    config = {
        "data": str(files / "cells.h5ad"),
        "grn": str(files / "grn.csv"),
        "model_kwargs": TINY,
        "train_kwargs": {**TRAIN, "checkpoint_dir": str(checkpoint_dir)},
        "pause_at": pause_at,
        "ready_file": str(tmp_path / "ready"),
        "out": None if out is None else str(out),
    }
    config_path = tmp_path / f"config-{time.monotonic_ns()}.json"
    config_path.write_text(json.dumps(config))
    return subprocess.Popen(
        [sys.executable, str(WORKER), str(config_path)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def wait_until_paused(proc: subprocess.Popen, ready: Path, timeout: float = 180) -> None:
    deadline = time.monotonic() + timeout
    while not ready.exists():
        if proc.poll() is not None:
            raise AssertionError(f"worker exited early ({proc.returncode}): {proc.stderr.read()}")
        if time.monotonic() > deadline:
            proc.kill()
            raise AssertionError("worker did not reach its pause point in time")
        time.sleep(0.05)


def kill(proc: subprocess.Popen) -> None:
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL


# killed in a subprocess ---------------------------------------------------------------------
def test_kill_mid_stage2_resume_in_process(cells, reference, worker_files, tmp_path):
    directory = tmp_path / "ck"
    proc = start_worker(worker_files, tmp_path, directory, pause_at=["stage2", 10])
    try:
        wait_until_paused(proc, tmp_path / "ready")
        assert names(directory)[-1] == "checkpoint-stage2-000000008.pt"
        # a second process training into the same directory is refused, and changes nothing
        before = sorted(p.name for p in directory.iterdir())
        with pytest.raises(CheckpointLockedError, match=f"pid {proc.pid}"):
            new_model(cells).train(checkpoint_dir=directory, **TRAIN)
        assert sorted(p.name for p in directory.iterdir()) == before
    finally:
        kill(proc)
    # the lock died with the killed process: its own resume is not blocked
    model = train(new_model(cells), directory)
    assert model.steps_ == reference["steps"]
    assert_same_weights(model.module.state_dict(), reference["state"])
    assert names(directory) == [f"checkpoint-stage2-{s:09d}.pt" for s in (16, 20, 24)]


def test_kill_between_stages_resume_in_new_process(reference, worker_files, tmp_path):
    directory = tmp_path / "ck"
    proc = start_worker(worker_files, tmp_path, directory, pause_at=["stage2", 0])
    try:
        wait_until_paused(proc, tmp_path / "ready")
    finally:
        kill(proc)
    assert names(directory)[-1] == "checkpoint-stage1-000000024.pt"
    out = tmp_path / "weights.pt"
    resumed = start_worker(worker_files, tmp_path, directory, out=out)
    _, stderr = resumed.communicate(timeout=300)
    assert resumed.returncode == 0, stderr
    assert_same_weights(torch.load(out, weights_only=True), reference["state"])


# stopped with Ctrl-C ------------------------------------------------------------------------
@pytest.mark.usefixtures("default_sigint")
def test_ctrl_c_stops_after_the_step_with_a_checkpoint_there(
    cells, reference, tmp_path, monkeypatch
):
    """A first Ctrl-C finishes the step in progress and writes a checkpoint of it (between
    the regular ones), from which training resumes exactly."""
    step, calls = GroundGANStage.step, []

    def step_with_ctrl_c(stage):
        calls.append(stage.name)
        if calls.count("stage2") == 10:
            signal.raise_signal(signal.SIGINT)  # arrives during step 10 of stage 2
        return step(stage)

    monkeypatch.setattr(GroundGANStage, "step", step_with_ctrl_c)
    directory = tmp_path / "ck"
    with pytest.raises(TrainingInterrupted, match="stage2: interrupted after step 10"):
        train(new_model(cells), directory)
    monkeypatch.undo()
    assert names(directory)[-2:] == [
        "checkpoint-stage2-000000008.pt",
        "checkpoint-stage2-000000010.pt",
    ]
    assert verify(directory / "checkpoint-stage2-000000010.pt") is None
    model = train(new_model(cells), directory)
    assert model.steps_ == reference["steps"]
    assert_same_weights(model.module.state_dict(), reference["state"])


# resumed from copies of the reference's checkpoints ---------------------------------------
def copy_checkpoints(source: Path, target: Path, upto: str) -> None:
    target.mkdir()
    for path in Checkpointer(source, 1, None).checkpoints():
        if path.name <= upto:
            shutil.copy(path, target / path.name)
            shutil.copy(path.with_suffix(".json"), target / path.with_suffix(".json").name)


@pytest.mark.parametrize(
    "upto", ["checkpoint-stage1-000000012.pt", "checkpoint-stage2-000000008.pt"]
)
def test_resume_mid_stage_is_exact(cells, reference, tmp_path, upto):
    copy_checkpoints(reference["dir"], tmp_path / "ck", upto)
    model = train(new_model(cells), tmp_path / "ck")
    assert_same_weights(model.module.state_dict(), reference["state"])
    # the checkpoint kept the losses logged before it, and those logged after the resume point
    # are the uninterrupted run's: the whole history is the same
    cols = ["stage", "step", "wasserstein", "generator_loss"]
    pd.testing.assert_frame_equal(reference["model"].history_[cols], model.history_[cols])


@pytest.mark.parametrize("damage", ["truncate", "flip", "no manifest", "bad manifest"])
def test_damaged_newest_checkpoint_falls_back(cells, reference, tmp_path, damage):
    directory = tmp_path / "ck"
    copy_checkpoints(reference["dir"], directory, "checkpoint-stage2-000000012.pt")
    newest = directory / "checkpoint-stage2-000000012.pt"
    data = newest.read_bytes()
    if damage == "truncate":
        newest.write_bytes(data[: len(data) // 2])
    elif damage == "flip":
        newest.write_bytes(data[:100] + bytes([data[100] ^ 1]) + data[101:])
    elif damage == "no manifest":
        newest.with_suffix(".json").unlink()
    else:
        newest.with_suffix(".json").write_text("{not json")
    assert verify(newest) is not None
    with pytest.warns(UserWarning, match="skipping checkpoint checkpoint-stage2-000000012"):
        model = train(new_model(cells), directory)
    assert_same_weights(model.module.state_dict(), reference["state"])


def test_fresh_directory_just_starts(cells, reference, tmp_path):
    directory = tmp_path / "new" / "ck"
    model = train(new_model(cells), directory, keep_checkpoints=2)
    assert_same_weights(model.module.state_dict(), reference["state"])
    assert names(directory) == ["checkpoint-stage2-000000020.pt", "checkpoint-stage2-000000024.pt"]
    assert not [p for p in directory.iterdir() if p.name.endswith(".tmp")]


def test_totals_and_same_process_continuation(cells, reference, tmp_path):
    directory = tmp_path / "ck"
    copy_checkpoints(reference["dir"], directory, "checkpoint-stage2-000000024.pt")
    model = train(new_model(cells), directory)  # already complete: restores, trains nothing
    assert model.steps_ == reference["steps"]
    assert_same_weights(model.module.state_dict(), reference["state"])
    train(model, directory)  # the same model again: nothing to do, nothing rewound
    assert_same_weights(model.module.state_dict(), reference["state"])
    train(model, directory, max_steps_stage2=28)  # totals: four more steps
    assert model.steps_ == {"stage1": 24, "stage2": 28}
    assert names(directory)[-1] == "checkpoint-stage2-000000028.pt"


def test_checkpoint_of_another_model_is_refused(cells, reference, tmp_path):
    directory = tmp_path / "ck"
    copy_checkpoints(reference["dir"], directory, "checkpoint-stage1-000000008.pt")
    adata, grn = cells[0].copy(), cells[1].copy()
    gg.GroundGAN.setup_anndata(adata, grn=grn)
    other = gg.GroundGAN(adata, **{**TINY, "latent_dim": 8})
    with pytest.raises(ValueError, match="written by another model.*init_params"):
        other.train(checkpoint_dir=directory, **TRAIN)
    assert other.steps_ == {"stage1": 0, "stage2": 0}


def test_checkpoint_holds_what_determines_the_future(reference):
    path = reference["dir"] / "checkpoint-stage2-000000008.pt"
    payload = torch.load(path, weights_only=True)
    assert payload["format"] == 2 and payload["steps"] == {"stage1": 24, "stage2": 8}
    assert set(payload["stages"]) == {"stage1", "stage2"}
    stage2 = payload["stages"]["stage2"]
    assert set(stage2["optimizers"]) == {"critic", "generator", "labeler", "antilabeler"}
    assert len(stage2["schedulers"]) == 2 and stage2["schedulers"][0]["last_epoch"] == 8
    assert {"training", "torch", "numpy"} <= set(payload["rng"])
    # the losses logged so far, including those of the stage in progress
    assert (payload["history"]["stage"][-1], payload["history"]["step"][-1]) == ("stage2", 8)
    manifest = json.loads(path.with_suffix(".json").read_text())
    assert manifest["size"] == path.stat().st_size and len(manifest["sha256"]) == 64


def test_global_random_states_are_restored(cells, reference, tmp_path):
    copy_checkpoints(reference["dir"], tmp_path / "ck", "checkpoint-stage1-000000004.pt")
    payload = torch.load(tmp_path / "ck" / "checkpoint-stage1-000000004.pt", weights_only=True)
    model = new_model(cells)
    model._runner.generator(torch.device("cpu"), 0)
    np.random.seed(12345)  # noqa: NPY002 (the legacy global state is under test)
    files = Checkpointer(tmp_path / "ck", 3, None)
    Checkpoints(model._runner, files, model_fingerprint(model), None).resume()
    assert torch.equal(torch.get_rng_state(), payload["rng"]["torch"])
    keys = np.random.get_state()[1]  # noqa: NPY002
    assert np.array_equal(keys, payload["rng"]["numpy"]["keys"].numpy())
    assert torch.equal(model._runner.rng.get_state(), payload["rng"]["training"])


# non-finite losses --------------------------------------------------------------------------
def test_nan_stops_training_and_keeps_last_good_checkpoint(cells, tmp_path, monkeypatch):
    original = WGANGPStage.step

    def poisoned(self):
        if self.name == "stage2" and self.completed_steps == 6:
            with torch.no_grad():
                next(self.module.critic.parameters()).view(-1)[0] = float("nan")
        return original(self)

    monkeypatch.setattr(WGANGPStage, "step", poisoned)
    directory = tmp_path / "ck"
    model = new_model(cells)
    with pytest.raises(NonFiniteLossError, match=r"stage2: non-finite loss within steps 5-8"):
        train(model, directory)
    assert names(directory)[-1] == "checkpoint-stage2-000000004.pt"
    payload = torch.load(directory / "checkpoint-stage2-000000004.pt", weights_only=True)
    assert all(torch.isfinite(t).all() for t in payload["module"].values() if t.is_floating_point())
    # training again resumes from the last good checkpoint (rewinding the poisoned model)
    monkeypatch.setattr(WGANGPStage, "step", original)
    with pytest.warns(UserWarning, match="rewinding"):
        train(model, directory, max_steps_stage2=6)
    assert model.steps_["stage2"] == 6
    assert all(torch.isfinite(p).all() for p in model.module.parameters())


def test_non_finite_weights_are_never_checkpointed(cells, tmp_path):
    model = new_model(cells)
    with torch.no_grad():
        next(model.module.labeler.parameters()).view(-1)[0] = float("inf")
    files = Checkpointer.open(tmp_path / "ck", 2)
    checkpoints = Checkpoints(model._runner, files, model_fingerprint(model), None)
    try:
        with pytest.raises(NonFiniteLossError, match="stage1: non-finite weights after step 4"):
            checkpoints.write({"stage1": 4, "stage2": 0})
    finally:
        files.close()
    assert names(tmp_path / "ck") == []


@pytest.mark.parametrize(
    "upto", ["checkpoint-stage1-000000012.pt", "checkpoint-stage2-000000008.pt"]
)
def test_resume_with_weight_averages_is_exact(cells, tmp_path, upto):
    reference = train(new_model(cells), tmp_path / "ref", keep_checkpoints=100, ema_decay=0.9)
    expected = {k: v.detach().clone() for k, v in reference.module.state_dict().items()}
    assert any(k.startswith("ema.target_generators.") for k in expected)
    copy_checkpoints(tmp_path / "ref", tmp_path / "ck", upto)
    resumed = train(new_model(cells), tmp_path / "ck", ema_decay=0.9)
    assert_same_weights(resumed.module.state_dict(), expected)
