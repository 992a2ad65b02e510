"""train(max_time=...): step totals from the measured speed, the budget honoured, exact reruns;
and the warning for CPU runs that would take hours.

A fake clock makes the timing deterministic: every training step of the model advances it by a
fixed number of seconds (the speed probe's steps, on a copy of the networks, by another).
"""

from __future__ import annotations

import time
import warnings
from datetime import timedelta

import pytest
import torch

import groundgan as gg
from groundgan.model import _budget
from groundgan.train import WGANGPStage

RUN = dict(device="cpu", progress_bar=False, batch_size_stage2=64)


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch):
    fake = FakeClock()
    monkeypatch.setattr(_budget, "now", fake)
    return fake


def step_costs(monkeypatch, clock: FakeClock, model, real: float, probe: float) -> None:
    """Each training step of ``model`` takes ``real`` fake seconds, each probe step ``probe``."""
    step = WGANGPStage.step

    def timed_step(stage):
        clock.now += real if stage.module is model.module else probe
        return step(stage)

    monkeypatch.setattr(WGANGPStage, "step", timed_step)


@pytest.fixture
def model(pbmc_grn_cells, tiny_model_kwargs):
    adata, grn = pbmc_grn_cells
    gg.GroundGAN.setup_anndata(adata, grn=grn)
    return gg.GroundGAN(adata, **tiny_model_kwargs)


def test_totals_follow_from_the_speed_and_the_share(model, clock, monkeypatch):
    step_costs(monkeypatch, clock, model, real=1.0, probe=1.0)
    start = clock.now
    model.train(recipe="fast", max_time=100, stage1_time_share=0.3, **RUN)
    probe = _budget.PROBE_WARMUP + _budget.PROBE_STEPS  # fake seconds per probe
    stage1 = 30 - probe  # its share, less its probe
    stage2 = 100 - 30 - probe
    assert model.steps_ == {"stage1": stage1, "stage2": stage2}
    record = model.train_record_
    assert record["planned_steps"] == {"stage1": stage1, "stage2": stage2}
    assert record["steps_per_second"] == {"stage1": 1.0, "stage2": 1.0}
    assert record["max_time"] == 100.0
    assert clock.now - start == 100


def test_a_slower_run_than_measured_stops_at_the_budget(model, clock, monkeypatch):
    step_costs(monkeypatch, clock, model, real=2.0, probe=1.0)
    start = clock.now
    model.train(recipe="fast", max_time=timedelta(seconds=100), stage1_time_share=0.3, **RUN)
    planned = model.train_record_["planned_steps"]
    assert model.steps_["stage1"] < planned["stage1"]
    assert model.steps_["stage2"] < planned["stage2"]
    assert clock.now - start <= 100 + 2.0  # within the step in progress
    assert model.history_["step"].iloc[-1] == model.steps_["stage2"]  # its losses are logged


def test_totals_are_capped_by_the_recipe(model, clock, monkeypatch):
    step_costs(monkeypatch, clock, model, real=0.01, probe=0.01)
    model.train(max_time=1000, max_steps_stage1=7, max_steps_stage2=9, **RUN)
    assert model.steps_ == {"stage1": 7, "stage2": 9}


def test_recorded_totals_repeat_the_run_exactly(model, clock, monkeypatch, pbmc_grn_cells):
    step_costs(monkeypatch, clock, model, real=1.0, probe=1.0)
    model.train(recipe="fast", max_time=60, stage1_time_share=0.5, **RUN)
    planned = model.train_record_["planned_steps"]
    again = gg.GroundGAN(model.adata, **{k: v for k, v in model.init_params_.items()})
    again.train(
        recipe="fast",
        max_steps_stage1=planned["stage1"],
        max_steps_stage2=planned["stage2"],
        **RUN,
    )
    for key, value in again.module.state_dict().items():
        assert torch.equal(value, model.module.state_dict()[key]), key


def test_a_second_budget_continues_training(model, clock, monkeypatch):
    step_costs(monkeypatch, clock, model, real=1.0, probe=1.0)
    model.train(recipe="fast", max_time=40, **RUN)
    first = dict(model.steps_)
    model.train(recipe="fast", max_time=40, **RUN)
    assert model.steps_["stage1"] == first["stage1"]  # frozen once stage 2 has started
    assert model.steps_["stage2"] > first["stage2"]


def test_a_real_budget_is_honoured(model):
    """Without a fake clock: the fast recipe's 5,000 steps would take minutes here."""
    start = time.perf_counter()
    model.train(recipe="fast", max_time=2.0, **RUN)
    assert time.perf_counter() - start < 2.0 + 20  # generous: one step, the probes, a busy CI
    assert 0 < model.steps_["stage2"] < 3000


@pytest.mark.parametrize("max_time", [0, -1, float("nan"), float("inf"), "1h", True])
def test_bad_budgets_are_refused(model, max_time):
    with pytest.raises(ValueError, match="max_time"):
        model.train(max_time=max_time, **RUN)
    assert model.steps_ == {"stage1": 0, "stage2": 0}


class Stop(Exception):
    pass


def stop_training(model, stage, step):
    raise Stop


def test_a_long_cpu_run_warns_with_its_duration(model, clock, monkeypatch):
    step_costs(monkeypatch, clock, model, real=1.0, probe=1.0)
    with pytest.warns(UserWarning, match=r"stage1: .* about 2\.3 days .*max_time=.*recipe='fast'"):
        with pytest.raises(Stop):
            model.train(callbacks=[(10, stop_training)], **RUN)  # the paper's 200,000 steps


def test_short_runs_and_budgets_do_not_warn(model, clock, monkeypatch):
    step_costs(monkeypatch, clock, model, real=1.0, probe=1.0)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        model.train(max_steps_stage1=20, max_steps_stage2=20, **RUN)
        model.train(max_steps_stage1=20, max_steps_stage2=200_000, max_time=30, **RUN)


def test_format_duration():
    assert _budget.format_duration(600) == "10 min"
    assert _budget.format_duration(5400) == "1.5 h"
    assert _budget.format_duration(3 * 86400) == "3.0 days"
