"""GroundGAN: training stages and totals, sampling in blocks, determinism, save/load."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch

import groundgan as gg

TRAIN = dict(
    max_steps_stage1=6,
    max_steps_stage2=6,
    batch_size_stage1=32,
    batch_size_stage2=64,
    progress_bar=False,
    log_every=3,
)


@pytest.fixture
def model(pbmc_grn_cells, tiny_model_kwargs):
    adata, grn = pbmc_grn_cells
    gg.GroundGAN.setup_anndata(adata, grn=grn)
    return gg.GroundGAN(adata, **tiny_model_kwargs)


@pytest.fixture
def trained(model):
    model.train(**TRAIN)
    return model


def weights(model):
    return {k: v.detach().clone() for k, v in model.module.state_dict().items()}


def test_repr_summarises_model(model):
    text = repr(model)
    assert "60 = 8 TFs + 52 targets" in text
    assert "GRN edges: 156" in text
    assert "target generators: depth 2, width 2" in text
    assert "trained steps: stage 1 0, stage 2 0" in text


def test_paper_depth_width_rule():
    from groundgan.model._groundgan import paper_depth_width

    assert paper_depth_width(5_000, "auto", "auto") == (3, 2.0)
    assert paper_depth_width(14_055, "auto", "auto") == (2, 1.0)
    assert paper_depth_width(14_055, 4, 3) == (4, 3.0)


def test_train_runs_both_stages_and_logs(trained):
    assert trained.steps_ == {"stage1": 6, "stage2": 6}
    assert trained.is_trained_
    history = trained.history_
    assert list(history["stage"]) == ["stage1"] * 2 + ["stage2"] * 2
    assert list(history["step"]) == [3, 6, 3, 6]
    assert {"labeler_loss", "antilabeler_loss", "wasserstein"} <= set(history.columns)
    assert np.isfinite(history[["critic_loss", "generator_loss"]].to_numpy()).all()


def test_stage1_trains_controller_only_and_stage2_freezes_it(model):
    before = weights(model)
    model.train(**{**TRAIN, "max_steps_stage2": 1}, stages=(1,))
    after1 = weights(model)
    changed = {k for k in before if not torch.equal(before[k], after1[k])}
    assert any(k.startswith("controller.") for k in changed)
    assert not any(k.startswith(("target_generators.", "labeler.", "critic.")) for k in changed)
    model.train(**TRAIN, stages=(2,))
    after2 = weights(model)
    changed = {k for k in after1 if not torch.equal(after1[k], after2[k])}
    assert not any(k.startswith(("controller.", "controller_critic.")) for k in changed)
    assert any(k.startswith("target_generators.") for k in changed)
    assert any(k.startswith("labeler.") for k in changed)
    assert any(k.startswith("antilabeler.") for k in changed)


def test_max_steps_are_totals(trained):
    before = weights(trained)
    trained.train(**TRAIN)  # already at the totals: nothing happens
    assert trained.steps_ == {"stage1": 6, "stage2": 6}
    assert all(torch.equal(before[k], v) for k, v in weights(trained).items())
    trained.train(**{**TRAIN, "max_steps_stage2": 9})
    assert trained.steps_ == {"stage1": 6, "stage2": 9}


def test_same_seed_same_weights_other_seed_differs(pbmc_grn_cells, tiny_model_kwargs):
    adata, grn = pbmc_grn_cells
    gg.GroundGAN.setup_anndata(adata, grn=grn)
    runs = []
    for seed in (0, 0, 1):
        m = gg.GroundGAN(adata, **tiny_model_kwargs)
        m.train(**TRAIN, seed=seed)
        runs.append(weights(m))
    assert all(torch.equal(runs[0][k], runs[1][k]) for k in runs[0])
    assert not all(torch.equal(runs[0][k], runs[2][k]) for k in runs[0])


def test_sample_shape_values_and_metadata(trained, pbmc_grn_cells):
    adata, grn = pbmc_grn_cells
    sim = trained.sample(100, seed=3)
    assert sim.shape == (100, 60)
    assert list(sim.var_names) == list(adata.var_names)
    assert sim.X.dtype == np.float32
    assert (sim.X >= 0).all()
    np.testing.assert_allclose(sim.X.sum(axis=1), 20_000, rtol=1e-4)
    assert sim.obs["simulated"].all()
    assert sim.uns["groundgan"]["seed"] == 3
    assert sim.uns["groundgan"]["steps_stage2"] == 6
    truth = sim.uns["groundgan_grn"]
    assert set(zip(truth.tf, truth.target, strict=True)) == set(
        zip(grn.tf, grn.target, strict=True)
    )
    assert (sim.var["grn_role"] == "tf").sum() == 8


def test_sample_is_deterministic_and_independent_of_n(trained):
    block = trained.sample_block_size  # 64
    big = trained.sample(3 * block + 5, seed=0)
    small = trained.sample(10, seed=0)
    np.testing.assert_array_equal(small.X, big.X[:10])
    again = trained.sample(3 * block + 5, seed=0)
    np.testing.assert_array_equal(again.X, big.X)
    other = trained.sample(10, seed=1)
    assert not np.array_equal(other.X, small.X)


def test_sample_without_seed_records_one(trained):
    sim = trained.sample(5)
    seed = sim.uns["groundgan"]["seed"]
    np.testing.assert_array_equal(trained.sample(5, seed=seed).X, sim.X)


@pytest.mark.parametrize("n", [0, -3, 2.5])
def test_sample_refuses_bad_n(trained, n):
    with pytest.raises(ValueError, match="n_cells"):
        trained.sample(n)


def test_untrained_model_samples_only_when_allowed(model):
    assert not model.is_trained_
    with pytest.raises(gg.InvalidInputError, match=r"not trained.*allow_untrained=True"):
        model.sample(3, seed=0)
    sim = model.sample(3, seed=0, allow_untrained=True)
    assert sim.shape == (3, 60) and sim.uns["groundgan"]["steps_stage2"] == 0
    with pytest.raises(gg.InvalidInputError, match="allow_untrained must be True or False"):
        model.sample(3, seed=0, allow_untrained="yes")


NO_CUDA = pytest.mark.skipif(torch.cuda.is_available(), reason="needs a torch without CUDA")


@NO_CUDA
@pytest.mark.parametrize("device", ["cuda", "cuda:0", torch.device("cuda")])
def test_cuda_without_cuda_is_a_one_line_error(device):
    from groundgan.model._groundgan import resolve_device

    with pytest.raises(gg.InvalidInputError) as info:
        resolve_device(device)
    message = str(info.value)
    assert "\n" not in message and "CPU-only build" in message
    assert "device='cpu' or 'auto'" in message and "install a CUDA build of torch" in message


def test_unknown_device_is_a_one_line_error():
    from groundgan.model._groundgan import resolve_device

    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device("auto").type in ("cpu", "cuda")
    with pytest.raises(gg.InvalidInputError, match="'gpu' is not a torch device"):
        resolve_device("gpu")


@NO_CUDA
def test_train_on_cuda_without_cuda_changes_nothing(model):
    before = {k: v.clone() for k, v in model.module.state_dict().items()}
    with pytest.raises(gg.InvalidInputError, match="CPU-only build"):
        model.train(**TRAIN, device="cuda")
    assert model.steps_ == {"stage1": 0, "stage2": 0} and model.device == torch.device("cpu")
    after = model.module.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)


def test_save_load_round_trip(trained, pbmc_grn_cells, tmp_path):
    adata, _ = pbmc_grn_cells
    trained.save(tmp_path / "model")
    assert sorted(p.name for p in (tmp_path / "model").iterdir()) == [
        "grn.csv",
        "manifest.json",
        "model.json",
        "model.pt",
        "var_names.csv",
    ]
    loaded = gg.GroundGAN.load(tmp_path / "model")
    assert loaded.steps_ == trained.steps_
    assert loaded.sample_block_size == trained.sample_block_size
    np.testing.assert_array_equal(loaded.sample(70, seed=5).X, trained.sample(70, seed=5).X)
    fresh = adata.copy()  # not set up: load sets it up with the saved GRN and can train on
    resumed = gg.GroundGAN.load(tmp_path / "model", adata=fresh)
    resumed.train(**{**TRAIN, "max_steps_stage2": 8})
    assert resumed.steps_["stage2"] == 8


def test_save_refuses_non_empty_dir(trained, tmp_path):
    trained.save(tmp_path / "m")
    with pytest.raises(ValueError, match="overwrite"):
        trained.save(tmp_path / "m")
    trained.save(tmp_path / "m", overwrite=True)


def test_load_checks_genes(trained, pbmc_grn_cells, tmp_path):
    adata, _ = pbmc_grn_cells
    trained.save(tmp_path / "m")
    other = adata[:, adata.var_names[::-1]].copy()
    with pytest.raises(ValueError, match="genes differ"):
        gg.GroundGAN.load(tmp_path / "m", adata=other)


def test_too_few_cells_refused_and_small_data_shrinks_batch(pbmc_grn_cells, tiny_model_kwargs):
    adata, grn = pbmc_grn_cells
    few = adata[:5].copy()
    gg.GroundGAN.setup_anndata(few, grn=grn)
    with pytest.raises(ValueError, match="too few cells"):
        gg.GroundGAN(few, **tiny_model_kwargs).train(**TRAIN)
    some = adata[:40].copy()
    gg.GroundGAN.setup_anndata(some, grn=grn)
    with pytest.warns(UserWarning, match="batch size 64 exceeds the 40"):
        gg.GroundGAN(some, **tiny_model_kwargs).train(**TRAIN)


def test_batch_warning_only_for_the_stages_trained(pbmc_grn_cells, tiny_model_kwargs):
    adata, grn = pbmc_grn_cells
    some = adata[:40].copy()
    gg.GroundGAN.setup_anndata(some, grn=grn)
    model = gg.GroundGAN(some, **tiny_model_kwargs)
    sizes = {**TRAIN, "batch_size_stage1": 16, "batch_size_stage2": 64}
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        model.train(**sizes, stages=(1,))  # stage 2's batch is not used yet
    with pytest.warns(UserWarning, match="batch size 64 exceeds the 40"):
        model.train(**sizes, stages=(2,))
    assert model._runner.stages["stage2"].settings.batch_size == 40


def test_bad_stages_refused(model):
    with pytest.raises(ValueError, match="stages"):
        model.train(**TRAIN, stages=(3,))


@pytest.mark.filterwarnings("ignore:precision='bf16' on cpu")
def test_bf16_precision_trains_close_to_fp32(pbmc_grn_cells, tiny_model_kwargs):
    adata, grn = pbmc_grn_cells
    gg.GroundGAN.setup_anndata(adata, grn=grn)
    fp32, bf16 = (gg.GroundGAN(adata, **tiny_model_kwargs) for _ in range(2))
    fp32.train(**TRAIN)
    bf16.train(**TRAIN, precision="bf16")
    assert all(p.dtype == torch.float32 for p in bf16.module.parameters())
    a, b = weights(fp32), weights(bf16)
    assert not all(torch.equal(a[k], b[k]) for k in a)  # autocast was in effect
    losses = ["critic_loss", "generator_loss"]
    np.testing.assert_allclose(
        bf16.history_[losses].to_numpy(), fp32.history_[losses].to_numpy(), rtol=0.1, atol=0.5
    )
    # the precision is part of the stage: switching it continues with the saved optimiser state
    bf16.train(**{**TRAIN, "max_steps_stage2": 8}, precision="fp32")
    assert bf16.steps_["stage2"] == 8


def test_cuda_graphs_off_cuda_train_the_capture_ready_step(pbmc_grn_cells, tiny_model_kwargs):
    adata, grn = pbmc_grn_cells
    gg.GroundGAN.setup_anndata(adata, grn=grn)
    eager, ready = (gg.GroundGAN(adata, **tiny_model_kwargs) for _ in range(2))
    eager.train(**TRAIN)
    with pytest.warns(RuntimeWarning, match="CUDA graphs need a CUDA device"):
        ready.train(**TRAIN, cuda_graphs=True)
    losses = ["critic_loss", "generator_loss"]
    np.testing.assert_allclose(
        ready.history_[losses].to_numpy(), eager.history_[losses].to_numpy(), rtol=1e-3, atol=1e-3
    )
    # a later call without graphs continues from the capture-ready stage's optimiser state
    ready.train(**{**TRAIN, "max_steps_stage2": 8})
    assert ready.steps_["stage2"] == 8


def test_unknown_precision_refused_before_checkpoints_exist(model, tmp_path):
    with pytest.raises(ValueError, match="precision must be one of"):
        model.train(**TRAIN, precision="fp16", checkpoint_dir=tmp_path / "ckpt")
    assert not (tmp_path / "ckpt").exists()


def interrupt_stage2_step(monkeypatch, n: int) -> None:
    """Make the ``n``-th stage-2 step of the next training raise KeyboardInterrupt."""
    from groundgan.train import GroundGANStage

    step, calls = GroundGANStage.step, []

    def interrupted(stage):
        calls.append(1)
        if len(calls) == n:
            raise KeyboardInterrupt
        return step(stage)

    monkeypatch.setattr(GroundGANStage, "step", interrupted)


def test_interrupted_training_keeps_steps_and_logged_losses(model, monkeypatch):
    interrupt_stage2_step(monkeypatch, 4)
    with pytest.raises(KeyboardInterrupt):
        model.train(**{**TRAIN, "log_every": 1})
    assert model.steps_ == {"stage1": 6, "stage2": 3}
    history = model.history_
    assert list(zip(history["stage"], history["step"], strict=True))[-4:] == [
        ("stage1", 6),
        ("stage2", 1),
        ("stage2", 2),
        ("stage2", 3),
    ]
    monkeypatch.undo()
    model.train(**TRAIN)  # continues from step 3 of stage 2
    assert model.steps_["stage2"] == 6 and list(model.history_["step"])[-1] == 6


def test_callbacks_see_the_model_at_their_steps_and_leave_training_alone(
    pbmc_grn_cells, tiny_model_kwargs
):
    adata, grn = pbmc_grn_cells
    gg.GroundGAN.setup_anndata(adata, grn=grn)
    run = dict(max_steps_stage1=7, max_steps_stage2=5, batch_size_stage2=64, progress_bar=False)
    seen, cells = [], []

    def callback(model, stage, step):
        seen.append((stage, step, model.steps_[stage]))
        if stage == "stage2":
            cells.append(model.sample(8, seed=0).X)  # sampling draws no training randomness

    watched = gg.GroundGAN(adata, **tiny_model_kwargs)
    watched.train(callbacks=[(3, callback)], **run)
    assert seen == [
        ("stage1", 3, 3),
        ("stage1", 6, 6),
        ("stage1", 7, 7),
        ("stage2", 3, 3),
        ("stage2", 5, 5),
    ]
    plain = gg.GroundGAN(adata, **tiny_model_kwargs)
    plain.train(**run)
    for key, value in plain.module.state_dict().items():
        assert torch.equal(value, watched.module.state_dict()[key]), key
    np.testing.assert_array_equal(cells[-1], plain.sample(8, seed=0).X)


@pytest.mark.parametrize("callbacks", [[(0, print)], [(5, "print")], [print]])
def test_bad_callbacks_are_refused(model, callbacks):
    with pytest.raises(ValueError):
        model.train(
            callbacks=callbacks, max_steps_stage1=2, max_steps_stage2=2, batch_size_stage2=64
        )
    assert model.steps_ == {"stage1": 0, "stage2": 0}


def test_a_call_after_an_interruption_goes_on_with_the_same_stage(
    model, pbmc_grn_cells, tiny_model_kwargs, monkeypatch
):
    """The stage (optimisers, schedules) is reused when settings and cells are unchanged,
    although each call builds a new training tensor; the result is that of one call."""
    interrupt_stage2_step(monkeypatch, 3)
    with pytest.raises(KeyboardInterrupt):
        model.train(**TRAIN)
    monkeypatch.undo()
    stage = model._runner.stages["stage2"]
    model.train(**TRAIN)
    assert model._runner.stages["stage2"] is stage
    adata, grn = pbmc_grn_cells
    gg.GroundGAN.setup_anndata(adata, grn=grn)
    once = gg.GroundGAN(adata, **tiny_model_kwargs)
    once.train(**TRAIN)
    for key, value in weights(once).items():
        torch.testing.assert_close(weights(model)[key], value, rtol=0, atol=0)


def test_stage_2_alone_needs_a_trained_controller(model):
    before = weights(model)
    with pytest.raises(gg.InvalidInputError, match=r"stages=\(2,\).*train stage 1 first"):
        model.train(**TRAIN, stages=(2,))
    assert model.steps_ == {"stage1": 0, "stage2": 0}
    for key, value in weights(model).items():
        assert torch.equal(value, before[key])


def test_a_larger_stage_1_total_after_stage_2_warns(trained):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        trained.train(**TRAIN)  # the same totals: nothing to say
    with pytest.warns(UserWarning, match="max_steps_stage1=12 is ignored: stage 2 has started"):
        trained.train(**{**TRAIN, "max_steps_stage1": 12})
    assert trained.steps_["stage1"] == 6


def test_fp32_strict_turns_tf32_off_and_equals_fp32_on_cpu(
    pbmc_grn_cells, tiny_model_kwargs, monkeypatch
):
    from groundgan.train import _performance, performance_options

    assert performance_options("fp32", False).tf32
    assert not performance_options("fp32-strict", False).tf32

    def refuse():
        raise AssertionError("TF32 was switched on")

    monkeypatch.setattr(_performance, "enable_tf32", refuse)
    with _performance.cuda_matmul_precision(torch.device("cuda"), tf32=False):
        pass  # fp32-strict never enters the TF32 switch, even on CUDA
    adata, grn = pbmc_grn_cells
    gg.GroundGAN.setup_anndata(adata, grn=grn)
    runs = {}
    for precision in ("fp32", "fp32-strict"):
        model = gg.GroundGAN(adata, **tiny_model_kwargs)
        model.train(**TRAIN, precision=precision, device="cpu")
        runs[precision] = weights(model)
    for key, value in runs["fp32"].items():
        assert torch.equal(value, runs["fp32-strict"][key])
    with pytest.raises(gg.InvalidInputError, match="'fp32-strict'"):
        gg.GroundGAN(adata, **tiny_model_kwargs).train(**TRAIN, precision="fp16")


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda a: a.X.__setitem__((0, 0), a.X[0, 0] + 50.0), "do not sum to the library size"),
        (lambda a: a.X.__setitem__((1, 1), np.nan), "NaN"),
    ],
    ids=["renormalised", "nan"],
)
def test_train_checks_cells_changed_after_setup(model, change, message):
    X = model.adata.X
    model.adata.X = X.toarray() if hasattr(X, "toarray") else np.array(X)
    change(model.adata)
    with pytest.raises(gg.InvalidInputError, match=f"{message}.*changed after setup_anndata"):
        model.train(**TRAIN)
    assert model.steps_ == {"stage1": 0, "stage2": 0}


def test_train_checks_genes_changed_after_setup(model):
    model.adata.var_names = [f"g{i}" for i in range(model.adata.n_vars)]
    with pytest.raises(gg.InvalidInputError, match="genes differ from the model's"):
        model.train(**TRAIN)
