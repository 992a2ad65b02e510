"""Exponential moving average of the generators' weights: the update rule and the stages."""

from __future__ import annotations

import copy

import pytest
import torch

from groundgan.train import ControllerStage, GroundGANStage, StageSettings
from groundgan.train._ema import decay_at, update_average
from tiny_networks import tiny_cells, tiny_module


def test_decay_warms_up_towards_its_value():
    assert decay_at(0.999, 0) == pytest.approx(0.1)
    assert decay_at(0.999, 90) == pytest.approx(0.91)
    assert decay_at(0.999, 10**6) == 0.999
    assert decay_at(0.5, 0) == pytest.approx(0.1) and decay_at(0.5, 100) == 0.5


def test_update_average_is_the_moving_average_and_copies_buffers():
    torch.manual_seed(0)
    current = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.BatchNorm1d(4))
    average = copy.deepcopy(current)
    before = [p.clone() for p in average.parameters()]
    with torch.no_grad():
        for p in current.parameters():
            p.add_(1.0)
        current[1].running_mean.add_(2.0)
    update_average(average, current, 0.9)
    for avg, old, new in zip(average.parameters(), before, current.parameters(), strict=True):
        torch.testing.assert_close(avg, 0.9 * old + 0.1 * new)
    assert torch.equal(average[1].running_mean, current[1].running_mean)


@pytest.mark.parametrize(
    "cls, name", [(ControllerStage, "controller"), (GroundGANStage, "target_generators")]
)
def test_stages_average_their_generator_only_when_asked(cls, name):
    for decay in (None, 0.99):
        module = tiny_module()
        settings = StageSettings(max_steps=5, batch_size=16, n_critic=1, ema_decay=decay)
        stage = cls(module, tiny_cells(), settings, torch.Generator().manual_seed(0))
        stage.start_average()
        start = copy.deepcopy(getattr(module, name).state_dict())
        for step in range(3):
            stage.step()
            stage.completed_steps = step + 1
        if decay is None:
            assert len(module.ema) == 0
            continue
        assert list(module.ema) == [name]
        averaged = module.ema[name].state_dict()
        trained = getattr(module, name).state_dict()
        weight = next(k for k in averaged if k.endswith("weight"))
        # between the start and the trained weights, equal to neither
        assert not torch.equal(averaged[weight], trained[weight])
        assert not torch.equal(averaged[weight], start[weight])
        assert all(not p.requires_grad for p in module.ema[name].parameters())
