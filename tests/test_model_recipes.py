"""Training recipes: named hyperparameters, explicit overrides, and the weight average they set."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

import groundgan as gg
from groundgan.model._recipes import FAST, PAPER, RECIPES, get_recipe

STEPS = dict(max_steps_stage1=6, max_steps_stage2=6, device="cpu", progress_bar=False)


@pytest.fixture
def model(pbmc_grn_cells, tiny_model_kwargs):
    adata, grn = pbmc_grn_cells
    gg.GroundGAN.setup_anndata(adata, grn=grn)
    return gg.GroundGAN(adata, **tiny_model_kwargs)


def weights(model) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in model.module.state_dict().items()}


def test_paper_recipe_is_the_papers_schedule():
    assert (PAPER.max_steps_stage1, PAPER.max_steps_stage2) == (200_000, 1_000_000)
    assert (PAPER.batch_size_stage1, PAPER.batch_size_stage2) == (128, 1024)
    assert (PAPER.lr_stage1, PAPER.lr_stage1_final) == (1e-4, 1e-5)
    assert (PAPER.lr_generator_stage2, PAPER.lr_generator_stage2_final) == (1e-3, 1e-4)
    assert (PAPER.lr_critic_stage2, PAPER.lr_critic_stage2_final) == (1e-3, 1e-3)
    assert (PAPER.lr_labeler, PAPER.n_critic, PAPER.gp_lambda) == (1e-4, 5, 10.0)
    assert PAPER.ema_decay is None
    assert set(RECIPES) == {"paper", "fast"}


def test_fast_recipe_differs_only_where_documented():
    changed = {
        f.name for f in dataclasses.fields(PAPER) if getattr(PAPER, f.name) != getattr(FAST, f.name)
    }
    assert changed == {
        "max_steps_stage1",
        "max_steps_stage2",
        "lr_stage1",
        "lr_stage1_final",
        "batch_size_stage2",
        "stage1_time_share",
    }


def test_the_default_recipe_is_the_paper(pbmc_grn_cells, tiny_model_kwargs):
    adata, grn = pbmc_grn_cells
    gg.GroundGAN.setup_anndata(adata, grn=grn)
    runs = []
    for kwargs in ({}, {"recipe": "paper"}):
        model = gg.GroundGAN(adata, **tiny_model_kwargs)
        model.train(batch_size_stage2=64, **STEPS, **kwargs)
        runs.append(weights(model))
    assert all(torch.equal(runs[0][k], runs[1][k]) for k in runs[0])


def test_explicit_arguments_override_the_recipe(model):
    model.train(recipe="fast", lr_stage1=5e-4, batch_size_stage2=64, ema_decay=0.9, **STEPS)
    s1, s2 = model._runner.stages["stage1"].settings, model._runner.stages["stage2"].settings
    assert (s1.lr_generator, s1.lr_generator_final) == (5e-4, FAST.lr_stage1_final)
    assert (s1.max_steps, s2.max_steps) == (6, 6)
    assert s2.batch_size == 64 and s2.ema_decay == 0.9
    record = model.train_record_
    assert record["recipe"] == "fast"
    assert record["hyperparameters"]["lr_stage1"] == 5e-4
    assert record["hyperparameters"]["ema_decay"] == 0.9


def test_weight_averages_on_request_and_zero_turns_them_off(pbmc_grn_cells, tiny_model_kwargs):
    adata, grn = pbmc_grn_cells
    gg.GroundGAN.setup_anndata(adata, grn=grn)
    averaged = gg.GroundGAN(adata, **tiny_model_kwargs)
    averaged.train(recipe="fast", batch_size_stage2=64, ema_decay=0.99, **STEPS)
    # the averaged controller became stage 2's controller; the target generators keep theirs
    assert list(averaged.module.ema) == ["target_generators"]
    for ema_decay in (None, 0):  # the recipes average nothing; 0 turns an average off
        plain = gg.GroundGAN(adata, **tiny_model_kwargs)
        plain.train(recipe="fast", batch_size_stage2=64, ema_decay=ema_decay, **STEPS)
        assert len(plain.module.ema) == 0


@pytest.mark.parametrize("recipe", ["slow", "Paper", None, 3])
def test_unknown_recipe_is_refused_before_anything_changes(model, recipe):
    before = weights(model)
    with pytest.raises(gg._validation.InvalidInputError, match="recipe.*'fast', 'paper'"):
        model.train(recipe=recipe, **STEPS)
    assert model.steps_ == {"stage1": 0, "stage2": 0}
    assert all(torch.equal(before[k], v) for k, v in model.module.state_dict().items())


@pytest.mark.parametrize("decay", [1, 1.5, -0.1, True, "0.9"])
def test_bad_ema_decay_is_refused(model, decay):
    with pytest.raises(ValueError, match="ema_decay"):
        model.train(ema_decay=decay, **STEPS)
    assert model.steps_ == {"stage1": 0, "stage2": 0}


def test_get_recipe_names_the_choices():
    assert get_recipe("fast") is FAST
    with pytest.raises(ValueError, match=r"\['fast', 'paper'\]"):
        get_recipe("quick")


def test_train_record_is_saved_with_the_model(model, tmp_path):
    model.train(recipe="fast", batch_size_stage2=64, **STEPS)
    model.save(tmp_path / "m")
    loaded = gg.GroundGAN.load(tmp_path / "m")
    assert loaded.train_record_ == model.train_record_
    np.testing.assert_array_equal(loaded.sample(10, seed=0).X, model.sample(10, seed=0).X)


def test_sample_perturb_and_replay_generate_from_the_average(model):
    model.train(recipe="fast", batch_size_stage2=64, ema_decay=0.99, **STEPS)
    sim = model.sample(40, seed=3)
    tf = model.grn["tf"].iloc[0]
    ko = model.perturb({tf: 0.0}, n_cells=40, seed=3)
    np.testing.assert_array_equal(ko.mod["control"].X, sim.X)
    state = model.replay_state(40, seed=3)
    # the same cells as a model whose target generators hold the averaged weights
    module = model.module
    module.target_generators.load_state_dict(module.ema["target_generators"].state_dict())
    del module.ema["target_generators"]
    np.testing.assert_array_equal(model.sample(40, seed=3).X, sim.X)
    with pytest.raises(ValueError, match="another model"):
        model.perturb({tf: 0.0}, state=state)  # the average is part of the model's identity


@pytest.mark.parametrize("warm", [True, False])
def test_warm_start_critic_starts_stage_2_from_the_stage_1_critic(model, warm):
    model.train(stages=(1,), **STEPS)
    fresh = {k: v.clone() for k, v in model.module.critic.state_dict().items()}
    model.train(
        max_steps_stage1=6,
        max_steps_stage2=1,
        batch_size_stage2=64,
        lr_critic_stage2=1e-12,  # the critic barely moves in its one step
        lr_critic_stage2_final=1e-12,
        warm_start_critic=warm,
        device="cpu",
        progress_bar=False,
    )
    start = model.module.controller_critic.state_dict() if warm else fresh
    for key, value in model.module.critic.state_dict().items():
        torch.testing.assert_close(value, start[key], rtol=0, atol=1e-8)
