"""The GAN baselines: scGAN, cscGAN (projection critic, conditional BatchNorm) and cWGAN.

Small networks and short runs on CPU: 250 steps of 64 cells at a constant learning rate of
1e-3 (the paper's 1e-4 -> 1e-5 suits 200,000 steps, not 250), one torch thread (tiny networks
run many times faster single-threaded on a loaded machine).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from anndata import AnnData

import groundgan as gg
from groundgan._validation import InvalidInputError
from groundgan.baselines import CWGAN, CscGAN, ScGAN
from groundgan.baselines._base import _largest_remainder
from groundgan.baselines._conditional import ConditionalStage
from groundgan.nn import CausalController, Critic
from groundgan.train import ControllerStage, WGANGPStage

LIBRARY_SIZE = 20_000
N_GENES = 100
LABELS = "bulk_labels"
MODEL_KWARGS = dict(
    latent_dim=16, generator_hidden=(64, 64), critic_hidden=(64, 64), sample_block_size=256
)
TRAIN_KWARGS = dict(batch_size=64, lr=1e-3, lr_final=1e-3, progress_bar=False)
TRAIN_STEPS = 250
#: cWGAN's critic sees the one-hot label scaled to 1000 (see CWGAN's label_scale).
CASES = {
    "ScGAN": (ScGAN, None, {}),
    "CscGAN": (CscGAN, LABELS, {}),
    "CWGAN": (CWGAN, LABELS, {"label_scale": 1000.0}),
}


@pytest.fixture(scope="module", autouse=True)
def _one_torch_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _normalised_top_genes(counts: AnnData, n_genes: int = N_GENES) -> AnnData:
    """The ``n_genes`` genes with most counts, each cell normalised to 20,000 (dense)."""
    totals = np.asarray(counts.X.sum(axis=0)).ravel()
    adata = counts[:, np.sort(np.argsort(-totals, kind="stable")[:n_genes])].copy()
    X = adata.X.toarray()
    adata.X = (X * (LIBRARY_SIZE / X.sum(axis=1, keepdims=True))).astype(np.float32)
    return adata


@pytest.fixture(scope="module")
def split(_pbmc_counts_cached) -> tuple[AnnData, AnnData]:
    """(train, test): PBMC cells on 100 genes, normalised to 20,000; 150 held-out cells."""
    adata = _normalised_top_genes(_pbmc_counts_cached.copy())
    return gg.pp.train_test_split(adata, n_test=150, seed=0)


@pytest.fixture
def cells(split) -> AnnData:
    return split[0].copy()


def _centroid_distance(X: np.ndarray, real: np.ndarray) -> float:
    return float(np.linalg.norm(np.asarray(X).mean(axis=0) - real.mean(axis=0)))


@dataclass
class Trained:
    model: ScGAN
    untrained_distance: float
    test: AnnData


@pytest.fixture(scope="module", params=list(CASES))
def trained(request, split) -> Trained:
    """Each model trained once per module; with the distance of its untrained cells to test."""
    cls, labels_key, extra = CASES[request.param]
    train, test = split[0].copy(), split[1]
    cls.setup_anndata(train, labels_key=labels_key)
    model = cls(train, **MODEL_KWARGS, **extra)
    codes = np.repeat(
        np.arange(len(model.labels_)), _largest_remainder(np.array(model.label_sizes_, float), 500)
    )
    untrained = _centroid_distance(model._generate(codes, seed=0), np.asarray(test.X))
    model.train(max_steps=TRAIN_STEPS, **TRAIN_KWARGS)
    return Trained(model, untrained, test)


def _tiny(cls, adata: AnnData, labels_key: str | None = None, **kwargs):
    cls.setup_anndata(adata, labels_key=labels_key)
    return cls(adata, **{**MODEL_KWARGS, **kwargs})


# ----------------------------------------------------------------------------- what they are


def test_models_reuse_groundgan_networks_and_stages(trained):
    model = trained.model
    if isinstance(model, ScGAN):
        assert isinstance(model.module.controller, CausalController)
        assert isinstance(model.module.controller_critic, Critic)
        assert isinstance(model._stage, ControllerStage)
    else:
        assert isinstance(model._stage, ConditionalStage)
    assert model._stage.settings.n_critic == 5 and model._stage.settings.gp_lambda == 10
    assert model.steps_ == TRAIN_STEPS
    assert list(model.history_.columns[:2]) == ["stage", "step"]
    assert model.history_["step"].iloc[-1] == TRAIN_STEPS
    assert (model.history_["stage"] == type(model).__name__).all()
    text = repr(model)
    assert text.startswith(type(model).__name__) and f"trained: {TRAIN_STEPS} steps" in text


def test_public_api():
    assert gg.baselines.ScGAN is ScGAN
    assert gg.baselines.CscGAN is CscGAN and gg.baselines.CWGAN is CWGAN
    from groundgan.baselines import _conditional, _gan

    assert _gan.__all__ == ["ScGAN"] and sorted(_conditional.__all__) == ["CWGAN", "CscGAN"]


# ----------------------------------------------------------------------------- sampling


def test_sample_shape_values_library_size_and_records(trained):
    model = trained.model
    sim = model.sample(n_cells=300, seed=0)
    assert sim.shape == (300, N_GENES)
    assert list(sim.var_names) == list(model.var_names)
    X = np.asarray(sim.X)
    assert X.dtype == np.float32 and np.isfinite(X).all() and (X >= 0).all()
    np.testing.assert_allclose(X.sum(axis=1), LIBRARY_SIZE, rtol=1e-4)
    assert sim.obs["simulated"].all()
    record = sim.uns["groundgan"]
    assert record["model"] == type(model).__name__
    assert record["seed"] == 0 and record["steps"] == TRAIN_STEPS
    assert record["version"] == gg.__version__
    if model.is_conditional:
        assert list(sim.obs[LABELS].cat.categories) == model.labels_
        assert record["labels_key"] == LABELS
    else:
        assert LABELS not in sim.obs
    assert model.sample().n_obs == 1000


def test_same_seed_same_cells_other_seed_other_cells(trained):
    model = trained.model
    first, again = model.sample(n_cells=100, seed=3), model.sample(n_cells=100, seed=3)
    np.testing.assert_array_equal(first.X, again.X)
    assert not np.array_equal(first.X, model.sample(n_cells=100, seed=4).X)
    assert model.sample(n_cells=5, seed=None).uns["groundgan"]["seed"] >= 0


def test_cells_do_not_depend_on_how_many_are_asked_for(trained):
    model = trained.model
    if model.is_conditional:
        few = model.sample(labels={"CD19+ B": 10}, seed=1)
        many = model.sample(labels={"CD19+ B": 600}, seed=1)
    else:
        few, many = model.sample(n_cells=10, seed=1), model.sample(n_cells=600, seed=1)
    np.testing.assert_array_equal(few.X, many.X[:10])


def test_training_brings_cells_closer_to_held_out_cells(trained):
    sim = trained.model.sample(n_cells=500, seed=0)
    trained_distance = _centroid_distance(sim.X, np.asarray(trained.test.X))
    assert trained_distance < 0.3 * trained.untrained_distance


def test_conditional_sampling_respects_requested_and_training_ratios(trained):
    model = trained.model
    if not model.is_conditional:
        with pytest.raises(InvalidInputError, match="unconditional"):
            model.sample(labels={"CD19+ B": 5})
        return
    requested = {"CD14+ Monocyte": 7, "CD34+": 3, "Dendritic": 0}
    sim = model.sample(labels=requested, seed=1)
    assert sim.n_obs == 10
    counts = sim.obs[LABELS].value_counts().to_dict()
    assert counts == {**{label: 0 for label in model.labels_}, "CD14+ Monocyte": 7, "CD34+": 3}
    default = model.sample(n_cells=270, seed=1).obs[LABELS].value_counts()
    training = model.adata.obs[LABELS].value_counts()
    for label, n in training.items():
        assert abs(default[label] - n * 270 / model.adata.n_obs) <= 1
    assert model.sample(labels={"CD19+ B": 4}).obs[LABELS].tolist() == ["CD19+ B"] * 4


def test_conditional_models_learn_the_label_differences(trained):
    """Sampled monocytes minus B cells points the way real monocytes minus B cells do."""
    model = trained.model
    if not model.is_conditional:
        return
    a, b = "CD14+ Monocyte", "CD19+ B"
    sim = model.sample(labels={a: 300, b: 300}, seed=0)
    real = model.adata

    def difference(adata):
        X, labels = np.asarray(adata.X), adata.obs[LABELS].to_numpy()
        return X[labels == a].mean(axis=0) - X[labels == b].mean(axis=0)

    assert np.corrcoef(difference(sim), difference(real))[0, 1] > 0.5


def test_one_label_blocks_keep_their_label(split):
    """A block of one label uses a reference batch's BatchNorm statistics, so the label of a
    cWGAN cell (a constant input within the block) is not normalised away."""
    model = _tiny(CWGAN, split[0].copy(), LABELS)
    b_cells, cd34 = model.labels_.index("CD19+ B"), model.labels_.index("CD34+")
    a = model._generate(np.full(50, b_cells), seed=0)
    b = model._generate(np.full(50, cd34), seed=0)
    assert np.abs(a - b).max() > 1


# ----------------------------------------------------------------------------- training


def test_repeated_training_continues_to_the_total_and_is_seeded(cells):
    first = _tiny(ScGAN, cells.copy())
    first.train(max_steps=3, log_every=1, **TRAIN_KWARGS)
    first.train(max_steps=5, log_every=1, **TRAIN_KWARGS)
    assert first.steps_ == 5 and first.history_["step"].tolist() == [1, 2, 3, 4, 5]
    first.train(max_steps=5, **TRAIN_KWARGS)
    assert first.steps_ == 5
    second = _tiny(ScGAN, cells.copy())
    second.train(max_steps=5, **TRAIN_KWARGS)
    for p, q in zip(first.module.parameters(), second.module.parameters(), strict=True):
        torch.testing.assert_close(p, q)


def test_new_labels_on_the_same_cells_rebuild_the_stage(cells):
    """The stage holds the label codes it was built with (a captured CUDA graph reads them),
    so relabelled cells get a new stage with the new codes, and unchanged ones keep it."""
    model = _tiny(CscGAN, cells.copy(), LABELS)
    model.train(max_steps=2, **TRAIN_KWARGS)
    first = model._stage
    model.train(max_steps=2, **TRAIN_KWARGS)  # same settings, cells and labels
    assert model._stage is first
    obs = model.adata.obs
    obs[LABELS] = obs[LABELS].to_numpy()[np.random.default_rng(0).permutation(len(obs))]
    obs[LABELS] = obs[LABELS].astype("category")
    model.train(max_steps=2, **TRAIN_KWARGS)
    assert model._stage is not first
    _, codes = model._training_tensors()
    assert torch.equal(model._stage.labels, codes)
    assert not torch.equal(first.labels, codes)


def test_batch_larger_than_the_data_shrinks_with_a_warning(cells):
    model = _tiny(CscGAN, cells[:40].copy(), LABELS)
    with pytest.warns(UserWarning, match="exceeds the 40 training cells"):
        model.train(max_steps=1, **{**TRAIN_KWARGS, "batch_size": 128})
    assert model._stage.settings.batch_size == 40


# ----------------------------------------------------------------------------- save / load


def test_save_load_round_trip_samples_identically(trained, tmp_path):
    model = trained.model
    model.save(tmp_path / "model")
    expected = ["history.csv", "manifest.json", "model.json", "model.pt", "var_names.csv"]
    if model.is_conditional:
        expected = sorted([*expected, "labels.csv"])
    assert sorted(p.name for p in (tmp_path / "model").iterdir()) == expected
    restored = type(model).load(tmp_path / "model")
    np.testing.assert_array_equal(
        restored.sample(n_cells=50, seed=2).X, model.sample(n_cells=50, seed=2).X
    )
    assert repr(restored) == repr(model)
    assert restored.labels_ == model.labels_ and restored.label_sizes_ == model.label_sizes_
    assert len(restored.history_) == len(model.history_)
    with pytest.raises(InvalidInputError, match="pass adata to load"):
        restored.train(max_steps=TRAIN_STEPS + 1)


def test_loaded_model_trains_further_on_fresh_data(split, tmp_path):
    adata = split[0].copy()
    model = _tiny(CscGAN, adata, LABELS)
    model.train(max_steps=2, **TRAIN_KWARGS)
    model.save(tmp_path)
    fresh = split[0].copy()
    restored = CscGAN.load(tmp_path, adata=fresh)
    assert fresh.uns["groundgan_setup_CscGAN"]["labels_key"] == LABELS
    restored.train(max_steps=3, **TRAIN_KWARGS)
    assert restored.steps_ == 3


def test_save_refuses_existing_directory_without_overwrite(trained, tmp_path):
    trained.model.save(tmp_path)
    with pytest.raises(InvalidInputError, match="overwrite=True"):
        trained.model.save(tmp_path)
    trained.model.save(tmp_path, overwrite=True)


def test_load_checks_genes_and_model_kind(trained, tmp_path):
    model = trained.model
    model.save(tmp_path)
    with pytest.raises(InvalidInputError, match="genes differ from the model"):
        type(model).load(tmp_path, adata=model.adata[:, :50].copy())
    other = CWGAN if isinstance(model, CscGAN) else CscGAN
    with pytest.raises(InvalidInputError, match=f"not {other.__name__}"):
        other.load(tmp_path)
    with pytest.raises(InvalidInputError, match="no saved model"):
        ScGAN.load(tmp_path / "nothing")


def test_load_refuses_pickled_objects(split, tmp_path):
    model = _tiny(ScGAN, split[0].copy())
    model.save(tmp_path)
    torch.save({"weights": np.arange(3, dtype=object)}, tmp_path / "model.pt")
    with pytest.raises(InvalidInputError, match="refused to load"):
        ScGAN.load(tmp_path)


# ----------------------------------------------------------------------------- errors


def _raw_counts(adata):
    adata.X = np.rint(adata.X / 100)


def _log_transformed(adata):
    adata.X = np.log1p(adata.X)


def _nan(adata):
    adata.X[0, 0] = np.nan


@pytest.mark.parametrize(
    "cls, break_it, kwargs, message",
    [
        (ScGAN, _raw_counts, {}, "do not sum to the library size"),
        (ScGAN, _log_transformed, {}, "log-transformed"),
        (CWGAN, _nan, {"labels_key": LABELS}, "NaN"),
        (ScGAN, None, {"labels_key": LABELS}, "unconditional"),
        (CscGAN, None, {}, "is conditional"),
        (CscGAN, None, {"labels_key": "cluster"}, "labels_key 'cluster' not found"),
        (ScGAN, None, {"layer": "counts"}, "layer 'counts' not found"),
        (ScGAN, None, {"library_size": 10_000}, "do not sum to the library size 10000"),
    ],
)
def test_setup_refuses_bad_input_and_writes_nothing(cells, cls, break_it, kwargs, message):
    if break_it is not None:
        break_it(cells)
    before = set(cells.uns)
    with pytest.raises(InvalidInputError, match=message):
        cls.setup_anndata(cells, **kwargs)
    assert set(cells.uns) == before


def test_library_size_comes_from_the_preprocessing_record(cells):
    cells.X = cells.X / 2
    cells.uns["groundgan_preprocess"] = {"library_size": 10_000}
    model = _tiny(ScGAN, cells)
    model.train(max_steps=1, **TRAIN_KWARGS)
    np.testing.assert_allclose(np.asarray(model.sample(20).X).sum(axis=1), 10_000, rtol=1e-4)


@pytest.mark.parametrize(
    "cls, kwargs, error, message",
    [
        (ScGAN, {"latent_dim": 0}, InvalidInputError, "latent_dim"),
        (ScGAN, {"generator_hidden": ()}, InvalidInputError, "generator_hidden"),
        (CscGAN, {"critic_hidden": (64, -1)}, InvalidInputError, "critic_hidden"),
        (CscGAN, {"sample_block_size": 0}, InvalidInputError, "sample_block_size"),
        (CWGAN, {"label_scale": 0}, InvalidInputError, "label_scale"),
        (CscGAN, {"label_scale": 2.0}, TypeError, "label_scale"),
    ],
)
def test_invalid_constructor_arguments(cells, cls, kwargs, error, message):
    cls.setup_anndata(cells, labels_key=LABELS if cls is not ScGAN else None)
    with pytest.raises(error, match=message):
        cls(cells, **kwargs)


def test_model_requires_setup(cells):
    with pytest.raises(InvalidInputError, match="setup_anndata"):
        CscGAN(cells)


def test_untrained_model_refuses_to_sample_and_says_so(cells):
    model = _tiny(CscGAN, cells, LABELS)
    assert "trained: no" in repr(model)
    with pytest.raises(InvalidInputError, match="not trained"):
        model.sample(n_cells=10)
    with pytest.raises(InvalidInputError, match="max_steps"):
        model.train(max_steps=0)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"n_cells": 0}, "n_cells must be a positive integer"),
        ({"n_cells": -5}, "n_cells must be a positive integer"),
        ({"n_cells": 2.5}, "n_cells must be a positive integer"),
        ({"n_cells": 10, "seed": -1}, "seed must be a non-negative integer"),
    ],
)
def test_sample_refuses_bad_n_cells_and_seeds(trained, kwargs, message):
    with pytest.raises(InvalidInputError, match=message):
        trained.model.sample(**kwargs)


def test_sample_refuses_bad_labels(trained):
    model = trained.model
    if not model.is_conditional:
        return
    with pytest.raises(InvalidInputError, match="unknown labels in labels: Neuron"):
        model.sample(labels={"Neuron": 3})
    with pytest.raises(InvalidInputError, match="non-negative integer"):
        model.sample(labels={"CD34+": -1})
    with pytest.raises(InvalidInputError, match="differs from the 3 cells"):
        model.sample(n_cells=10, labels={"CD34+": 3})
    with pytest.raises(InvalidInputError, match="0 cells"):
        model.sample(labels={"CD34+": 0})
    with pytest.raises(InvalidInputError, match="dict label"):
        model.sample(labels=[("CD34+", 3)])


def test_training_refuses_labels_the_model_does_not_know(split, tmp_path):
    model = _tiny(CscGAN, split[0].copy(), LABELS)
    model.save(tmp_path)
    other = split[0].copy()
    other.obs[LABELS] = other.obs[LABELS].cat.rename_categories(lambda c: f"x{c}")
    with pytest.raises(InvalidInputError, match="labels the model does not know"):
        CscGAN.load(tmp_path, adata=other).train(max_steps=1, **TRAIN_KWARGS)


# ----------------------------------------------------------------------------- the runner
# GAN baselines train through groundgan.train.TrainingRunner, as GroundGAN does: checkpoints,
# resume after SIGKILL or Ctrl-C, validation and the speed options.
RUN_STEPS = 12
RUN_KWARGS = dict(
    batch_size=32,
    lr=1e-3,
    lr_final=1e-4,
    seed=3,
    device="cpu",
    progress_bar=False,
    log_every=2,
    checkpoint_every=4,
)
WORKER = Path(__file__).with_name("resume_worker.py")


@contextmanager
def _deterministic():
    """One thread and deterministic kernels, as in the worker process."""
    strict = torch.are_deterministic_algorithms_enabled()
    torch.use_deterministic_algorithms(True)
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(strict)


def _run(name: str, cells: AnnData, checkpoint_dir=None, **changes):
    cls, labels_key, extra = CASES[name]
    model = _tiny(cls, cells.copy(), labels_key, **extra)
    with _deterministic():
        kwargs = {"max_steps": RUN_STEPS, **RUN_KWARGS, **changes}
        model.train(checkpoint_dir=checkpoint_dir, **kwargs)
    return model


def _assert_same_run(model, reference) -> None:
    state, ref = model.module.state_dict(), reference.module.state_dict()
    assert [k for k in ref if not torch.equal(state[k], ref[k])] == []
    pd.testing.assert_frame_equal(model.history_, reference.history_)
    assert model.steps_ == reference.steps_ == RUN_STEPS


@pytest.fixture(scope="module")
def references(split, tmp_path_factory) -> dict:
    """One uninterrupted run per model, every checkpoint kept."""
    out = {}
    for name in CASES:
        directory = tmp_path_factory.mktemp(f"reference-{name}")
        out[name] = _run(name, split[0], directory, keep_checkpoints=100)
    return out


def _checkpoint_names(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.glob("checkpoint-*.pt"))


@pytest.mark.parametrize("name", list(CASES))
def test_checkpoints_of_a_baseline_run(references, name, tmp_path):
    reference = references[name]
    directory = tmp_path / "ck"
    model = _run(name, reference.adata, directory, keep_checkpoints=2)
    assert _checkpoint_names(directory) == [
        "checkpoint-stage1-000000008.pt",
        "checkpoint-stage1-000000012.pt",
    ]
    _assert_same_run(model, reference)
    payload = torch.load(directory / "checkpoint-stage1-000000012.pt", weights_only=True)
    assert payload["steps"] == {name: RUN_STEPS} and payload["train_seed"] == 3
    assert payload["history"]["stage"][-1] == name


@pytest.mark.parametrize("name", list(CASES))
def test_sigkill_and_resume_is_bitwise(references, name, tmp_path):
    reference = references[name]
    data = tmp_path / "cells.h5ad"
    reference.adata.write_h5ad(data)
    directory, ready = tmp_path / "ck", tmp_path / "ready"
    config = {
        "data": str(data),
        "model": name,
        "labels_key": CASES[name][1],
        "model_kwargs": {**MODEL_KWARGS, **CASES[name][2]},
        "train_kwargs": {"max_steps": RUN_STEPS, **RUN_KWARGS, "checkpoint_dir": str(directory)},
        "pause_at": [name, 6],
        "ready_file": str(ready),
    }
    (tmp_path / "config.json").write_text(json.dumps(config))
    proc = subprocess.Popen(
        [sys.executable, str(WORKER), str(tmp_path / "config.json")],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 180
        while not ready.exists():
            assert proc.poll() is None, f"worker exited early: {proc.stderr.read()}"
            assert time.monotonic() < deadline, "worker did not reach its pause point"
            time.sleep(0.05)
        assert _checkpoint_names(directory)[-1] == "checkpoint-stage1-000000004.pt"
    finally:
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    resumed = _run(name, reference.adata, directory)
    _assert_same_run(resumed, reference)


@pytest.mark.usefixtures("default_sigint")
@pytest.mark.parametrize("name", list(CASES))
def test_ctrl_c_writes_a_checkpoint_and_training_resumes_bitwise(
    references, name, tmp_path, monkeypatch
):
    reference = references[name]
    original, calls = WGANGPStage.step, []

    def step_with_ctrl_c(stage):
        calls.append(stage.name)
        if len(calls) == 6:
            signal.raise_signal(signal.SIGINT)  # arrives during step 6
        return original(stage)

    monkeypatch.setattr(WGANGPStage, "step", step_with_ctrl_c)
    directory = tmp_path / "ck"
    with pytest.raises(gg.TrainingInterrupted, match=f"{name}: interrupted after step 6"):
        _run(name, reference.adata, directory)
    monkeypatch.undo()
    assert _checkpoint_names(directory)[-1] == "checkpoint-stage1-000000006.pt"
    _assert_same_run(_run(name, reference.adata, directory), reference)


def test_checkpoint_of_another_model_is_refused(references, tmp_path):
    directory = tmp_path / "ck"
    _run("ScGAN", references["ScGAN"].adata, directory, max_steps=4)
    with pytest.raises(InvalidInputError, match="written by another model"):
        _run("CscGAN", references["CscGAN"].adata, directory)


@pytest.mark.parametrize("name", list(CASES))
def test_validation_keeps_a_history_and_the_best_model(references, split, name, tmp_path):
    directory = tmp_path / "ck"
    model = _run(
        name, references[name].adata, directory, validation_adata=split[1], validate_every=4
    )
    history = model.validation_history_
    assert history["step"].tolist() == [4, 8, 12] and (history["stage"] == name).all()
    assert history["rf_auroc"].between(0, 1).all() and (history["euclidean"] > 0).all()
    best = json.loads((directory / "best" / "validation.json").read_text())
    row = history.sort_values(["euclidean"]).iloc[0]
    assert best["step"] == row["step"] and best["euclidean"] == pytest.approx(row["euclidean"])
    loaded = type(model).load(directory / "best")
    assert loaded.steps_ == best["step"]
    # validating does not touch the training stream: the weights are the plain run's
    _assert_same_run(model, references[name])


@pytest.mark.parametrize("name", list(CASES))
def test_precision_and_cuda_graphs(references, name):
    reference = references[name]
    strict = _run(name, reference.adata, precision="fp32-strict")
    _assert_same_run(strict, reference)  # no TF32 on a CPU anyway
    with pytest.warns(RuntimeWarning, match="CUDA graphs need a CUDA device"):
        ready = _run(name, reference.adata, max_steps=4, cuda_graphs=True)
    eager = _run(name, reference.adata, max_steps=4)
    np.testing.assert_allclose(
        ready.history_["critic_loss"], eager.history_["critic_loss"], rtol=1e-3, atol=1e-3
    )


@pytest.mark.filterwarnings("ignore:precision='bf16' on cpu")
@pytest.mark.parametrize("name", list(CASES))
def test_bf16_autocast_trains_in_float32_weights(references, name):
    reference = references[name]
    bf16 = _run(name, reference.adata, max_steps=4, precision="bf16")
    fp32 = _run(name, reference.adata, max_steps=4)
    assert all(p.dtype == torch.float32 for p in bf16.module.parameters())
    a, b = bf16.module.state_dict(), fp32.module.state_dict()
    assert not all(torch.equal(a[k], b[k]) for k in a)  # autocast was in effect
    assert np.isfinite(bf16.history_["critic_loss"]).all()


@pytest.mark.parametrize(
    "changes, message",
    [
        ({"precision": "fp16"}, "precision must be one of"),
        ({"cuda_graphs": "yes"}, "cuda_graphs must be True or False"),
        ({"checkpoint_every": 0}, "checkpoint_every must be a positive integer"),
        ({"keep_checkpoints": 0}, "keep_checkpoints must be a positive integer"),
        ({"validate_every": 0, "validation_adata": "test"}, "validate_every must be"),
    ],
)
def test_bad_training_options_are_refused_before_the_directory_exists(
    split, changes, message, tmp_path
):
    if changes.get("validation_adata") == "test":
        changes["validation_adata"] = split[1]
    with pytest.raises(InvalidInputError, match=message):
        _run("ScGAN", split[0], tmp_path / "ck", **changes)
    assert not (tmp_path / "ck").exists()
