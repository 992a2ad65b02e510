"""The training loop: logging from device buffers, hooks, and stopping cleanly on Ctrl-C."""

from __future__ import annotations

import copy
import signal
import threading

import pytest
import torch

from groundgan.train import GroundGANStage, StageSettings, TrainingInterrupted, run_stage
from groundgan.train._loop import interrupt_after_step
from tiny_networks import tiny_cells, tiny_module

pytestmark = pytest.mark.usefixtures("default_sigint")


def new_stage() -> GroundGANStage:
    settings = StageSettings(max_steps=20, batch_size=16, n_critic=2)
    return GroundGANStage(
        copy.deepcopy(tiny_module()), tiny_cells(), settings, torch.Generator().manual_seed(0)
    )


def interrupting(stage: GroundGANStage, at_step: int, times: int = 1) -> None:
    """Send SIGINT ``times`` times from inside step ``at_step``, between its critic updates."""
    critic_step, calls = stage.critic_step, []

    def critic_step_with_interrupt():
        calls.append(1)
        if len(calls) == (at_step - 1) * stage.settings.n_critic + 1:
            for _ in range(times):
                signal.raise_signal(signal.SIGINT)
        return critic_step()

    stage.critic_step = critic_step_with_interrupt


def test_logs_means_every_log_every_steps_and_calls_hooks():
    stage, seen = new_stage(), []
    hooks = [(5, lambda stage, step: seen.append(step))]
    rows = run_stage(stage, 0, 7, log_every=3, progress_bar=False, hooks=hooks)
    assert [r["step"] for r in rows] == [3, 5, 7]  # also flushed before each due hook
    assert all(set(r) == {"stage", "step", *stage.metric_names} for r in rows)
    assert seen == [5, 7] and stage.completed_steps == 7  # hooks also after the last step


def test_first_ctrl_c_finishes_the_step_then_stops():
    interrupted, reference = new_stage(), new_stage()
    interrupting(interrupted, at_step=3)
    rows: list[dict] = []
    with pytest.raises(TrainingInterrupted, match="stage2: interrupted after step 3") as stop:
        run_stage(interrupted, 0, 6, log_every=2, progress_bar=False, rows=rows)
    assert isinstance(stop.value, KeyboardInterrupt)
    assert (stop.value.stage, stop.value.step) == ("stage2", 3)
    assert interrupted.completed_steps == 3
    assert [r["step"] for r in rows] == [2, 3]  # the buffered step is logged too
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    # every weight belongs to a completed step: continuing gives the uninterrupted run
    run_stage(interrupted, 3, 6, progress_bar=False)
    run_stage(reference, 0, 6, progress_bar=False)
    for p, q in zip(interrupted.module.parameters(), reference.module.parameters(), strict=True):
        assert torch.equal(p, q)


def test_second_ctrl_c_stops_at_once():
    stage = new_stage()
    interrupting(stage, at_step=2, times=2)
    with pytest.raises(KeyboardInterrupt) as caught:
        run_stage(stage, 0, 6, progress_bar=False)
    assert not isinstance(caught.value, TrainingInterrupted)
    assert stage.completed_steps == 1
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_ctrl_c_is_left_alone_off_the_main_thread_and_under_other_handlers():
    seen = []
    thread = threading.Thread(target=lambda: seen.append(_deferring()))
    thread.start()
    thread.join()
    assert seen == [False]
    previous = signal.signal(signal.SIGINT, lambda *args: None)
    try:
        assert not _deferring()
    finally:
        signal.signal(signal.SIGINT, previous)
    assert _deferring()


def _deferring() -> bool:
    """Whether interrupt_after_step takes over SIGINT here."""
    before = signal.getsignal(signal.SIGINT)
    with interrupt_after_step():
        return signal.getsignal(signal.SIGINT) is not before


def test_stop_after_ends_the_stage_after_that_step_like_a_last_step():
    stage, seen = new_stage(), []
    hooks = [(50, lambda stage, step: seen.append(step))]
    rows = run_stage(
        stage, 0, 20, log_every=4, progress_bar=False, hooks=hooks, stop_after=lambda s: s == 7
    )
    assert stage.completed_steps == 7
    assert [r["step"] for r in rows] == [4, 7]  # the losses of steps 5-7 are logged
    assert seen == [7]  # hooks due "after the last step" run there
    # the rest of the stage can follow, as after an interruption
    rest = run_stage(stage, 7, 20, log_every=4, progress_bar=False)
    assert stage.completed_steps == 20 and rest[0]["step"] == 11
