"""The training runner: random stream, stage cache, histories, checkpoints, validation.

Pure torch (tiny networks, no genes): what GroundGAN and the GAN baselines share.
"""

from __future__ import annotations

import copy
import math
import signal

import pytest
import torch

from groundgan.train import (
    ControllerStage,
    GroundGANStage,
    PerformanceOptions,
    StageSettings,
    TrainingInterrupted,
    TrainingRunner,
    performance_options,
)
from groundgan.train._checkpoints import Checkpointer, checkpoint_name, progress_order
from groundgan.train._runner import columns_to_rows, is_better, rows_to_columns
from tiny_networks import tiny_cells, tiny_module

STAGES = {"stage1": ControllerStage, "stage2": GroundGANStage}
FINGERPRINT = {"model": "tiny"}


def settings(**changes) -> StageSettings:
    return StageSettings(**{"max_steps": 6, "batch_size": 16, "n_critic": 2, **changes})


def builder(runner: TrainingRunner, name: str):
    def build(data, stage_settings, rng, performance):
        return STAGES[name](runner.module, data, stage_settings, rng, performance=performance)

    return build


def train(runner: TrainingRunner, name: str, cells: torch.Tensor, total: int, **kwargs) -> None:
    """Train stage ``name`` up to ``total`` steps (of a 6-step schedule)."""
    stage = runner.stage(name, settings(), PerformanceOptions(), cells, builder(runner, name))
    runner.train_stage(name, stage, total, progress_bar=False, log_every=2, **kwargs)


def new_runner() -> TrainingRunner:
    runner = TrainingRunner(copy.deepcopy(tiny_module()), ("stage1", "stage2"))
    runner.generator(torch.device("cpu"), 0)
    return runner


def state(runner: TrainingRunner) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in runner.module.state_dict().items()}


def assert_same_state(a: dict, b: dict) -> None:
    assert [k for k in a if not torch.equal(a[k], b[k])] == []


def test_generator_is_kept_for_the_same_device_and_seed_and_new_otherwise():
    runner = TrainingRunner(tiny_module(), ("stage1",))
    first = runner.generator(torch.device("cpu"), 3)
    assert runner.generator(torch.device("cpu"), 3) is first
    other = runner.generator(torch.device("cpu"), 4)
    assert other is not first and runner.seed == 4
    assert torch.equal(other.get_state(), torch.Generator().manual_seed(4).get_state())


def test_stage_is_cached_until_settings_or_cells_change():
    runner, cells = new_runner(), tiny_cells()
    build = builder(runner, "stage1")
    stage = runner.stage("stage1", settings(), PerformanceOptions(), cells, build)
    assert runner.stage("stage1", settings(), PerformanceOptions(), cells.clone(), build) is stage
    moved = runner.stage("stage1", settings(lr_generator=5e-4), PerformanceOptions(), cells, build)
    assert moved is not stage
    other_cells = runner.stage(
        "stage1", settings(lr_generator=5e-4), PerformanceOptions(), cells + 1, build
    )
    assert other_cells is not moved
    runner.generator(torch.device("cpu"), 9)  # a new stream: a new stage draws from it
    assert (
        runner.stage(
            "stage1", settings(lr_generator=5e-4), PerformanceOptions(), cells + 1, build
        ).rng
        is runner.rng
    )


def test_stage_is_rebuilt_when_the_cells_labels_change():
    runner, cells = new_runner(), tiny_cells()
    build = builder(runner, "stage1")
    codes = torch.zeros(cells.shape[0], dtype=torch.long)
    stage = runner.stage("stage1", settings(), PerformanceOptions(), cells, build, labels=codes)
    same = runner.stage(
        "stage1", settings(), PerformanceOptions(), cells, build, labels=codes.clone()
    )
    assert same is stage
    relabelled = runner.stage(
        "stage1", settings(), PerformanceOptions(), cells, build, labels=codes + 1
    )
    assert relabelled is not stage
    unlabelled = runner.stage("stage1", settings(), PerformanceOptions(), cells, build)
    assert unlabelled is not relabelled
    assert runner.stage("stage1", settings(), PerformanceOptions(), cells, build) is unlabelled


def test_steps_and_rows_count_every_stage_and_hooks_see_the_step_counted():
    runner, cells, seen = new_runner(), tiny_cells(), []
    hook = (2, lambda stage, step: seen.append(dict(runner.steps)))
    train(runner, "stage1", cells, 4, hooks=[hook])
    train(runner, "stage2", cells, 3, hooks=[hook])
    assert runner.steps == {"stage1": 4, "stage2": 3}
    assert seen == [
        {"stage1": 2, "stage2": 0},
        {"stage1": 4, "stage2": 0},
        {"stage1": 4, "stage2": 2},
        {"stage1": 4, "stage2": 3},
    ]
    assert [(r["stage"], r["step"]) for r in runner.rows] == [
        ("stage1", 2),
        ("stage1", 4),
        ("stage2", 2),
        ("stage2", 3),
    ]
    train(runner, "stage2", cells, 3)  # a total already reached: nothing happens
    assert len(runner.rows) == 4


def test_rows_and_columns_round_trip_with_missing_values():
    rows = [{"stage": "stage1", "step": 2, "a": 1.0}, {"stage": "stage2", "step": 2, "b": 3.0}]
    columns = rows_to_columns(rows)
    assert list(columns) == ["stage", "step", "a", "b"]
    assert columns["step"] == [2, 2] and math.isnan(columns["b"][0])
    assert columns_to_rows(columns) == rows
    assert columns_to_rows({}) == []


def test_checkpoint_names_sort_by_stage_then_step():
    assert checkpoint_name({"stage1": 12, "stage2": 0}) == "checkpoint-stage1-000000012"
    assert checkpoint_name({"stage1": 12, "stage2": 4}) == "checkpoint-stage2-000000004"
    assert checkpoint_name({"ScGAN": 7}) == "checkpoint-stage1-000000007"
    assert progress_order({"stage1": 12, "stage2": 4}) > progress_order({"stage1": 20, "stage2": 0})


def test_resumed_run_is_the_uninterrupted_run(tmp_path):
    cells = tiny_cells()
    reference = new_runner()
    train(reference, "stage1", cells, 4)
    train(reference, "stage2", cells, 6)
    interrupted = new_runner()
    with interrupted.checkpointing(tmp_path, 3, FINGERPRINT) as checkpoints:
        hooks = [(2, checkpoints.hook())]
        train(interrupted, "stage1", cells, 4, hooks=hooks)
        train(interrupted, "stage2", cells, 4, hooks=hooks)
    resumed = new_runner()  # a fresh process: same module init, same seed
    with resumed.checkpointing(tmp_path, 3, FINGERPRINT):
        assert resumed.steps == {"stage1": 4, "stage2": 4}
        train(resumed, "stage2", cells, 6)
    assert_same_state(state(resumed), state(reference))
    assert resumed.rows == reference.rows


@pytest.mark.usefixtures("default_sigint")
def test_ctrl_c_in_a_checkpointed_block_writes_the_step_it_stopped_at(tmp_path):
    runner, cells = new_runner(), tiny_cells()
    original, calls = ControllerStage.step, []

    def step(stage):
        calls.append(1)
        if len(calls) == 3:
            signal.raise_signal(signal.SIGINT)
        return original(stage)

    stage = runner.stage(
        "stage1", settings(), PerformanceOptions(), cells, builder(runner, "stage1")
    )
    stage.step = lambda: step(stage)
    with pytest.raises(TrainingInterrupted, match="stage1: interrupted after step 3"):
        with runner.checkpointing(tmp_path, 3, FINGERPRINT):
            runner.train_stage("stage1", stage, 6, progress_bar=False)
    files = Checkpointer(tmp_path, 3).checkpoints()
    assert [p.name for p in files] == ["checkpoint-stage1-000000003.pt"]
    assert runner.steps["stage1"] == 3


def test_checkpoint_of_another_fingerprint_is_refused(tmp_path):
    runner, cells = new_runner(), tiny_cells()
    with runner.checkpointing(tmp_path, 3, FINGERPRINT) as checkpoints:
        train(runner, "stage1", cells, 2, hooks=[(2, checkpoints.hook())])
    with pytest.raises(ValueError, match="written by another model .different model"):
        with new_runner().checkpointing(tmp_path, 3, {"model": "other"}):
            pass


def test_validation_rows_and_best_model(tmp_path):
    runner, cells = new_runner(), tiny_cells()
    figures = iter(
        [
            {"euclidean": 3.0, "rf_auroc": 0.9},
            {"euclidean": 1.0, "rf_auroc": 0.7},
            {"euclidean": 2.0, "rf_auroc": 0.5},
        ]
    )
    written = []

    def write(directory):
        steps = dict(runner.steps)
        directory.mkdir(parents=True)
        (directory / "model.txt").write_text(str(steps))
        written.append(steps)

    with runner.checkpointing(tmp_path, 3, FINGERPRINT) as checkpoints:
        validate = runner.validation_hook("stage2", lambda: next(figures), checkpoints, write)
        train(runner, "stage1", cells, 2, hooks=[(1, validate)])  # another stage: skipped
        train(runner, "stage2", cells, 6, hooks=[(2, validate)])
    assert [r["step"] for r in runner.validation_rows] == [2, 4, 6]
    assert written == [{"stage1": 2, "stage2": 2}, {"stage1": 2, "stage2": 4}]
    assert (tmp_path / "best" / "model.txt").read_text() == str({"stage1": 2, "stage2": 4})
    assert is_better({"euclidean": 0.5, "rf_auroc": 1.0}, runner.validation_rows)


def test_precision_names_of_train():
    assert performance_options("fp32", False).tf32
    assert not performance_options("fp32-strict", False).tf32
    assert performance_options("bf16", True).cuda_graphs
    with pytest.raises(ValueError, match="precision must be one of"):
        performance_options("fp16", False)
