"""Whole-step CUDA graphs: warm-up, capture, replay and fallback logic (on the CPU through a
recording backend), and on a GPU the captured steps against the eager ones."""

from __future__ import annotations

import contextlib
import copy
import warnings

import pytest
import torch

from groundgan.train import GroundGANStage, StageSettings
from groundgan.train._graphs import CapturedStep, CudaGraphBackend
from groundgan.train._performance import PerformanceOptions
from tiny_networks import tiny_cells, tiny_module


class RecordingBackend:
    """Stands in for CUDA graphs on the CPU: "captures" by remembering the step, "replays" by
    calling it into the static output; counts what it was asked to do."""

    def __init__(self, fail_capture: bool = False):
        self.fail_capture = fail_capture
        self.eager_runs = 0
        self.captures = 0
        self.replays = 0

    def run_eager(self, step):
        self.eager_runs += 1
        return step()

    def capture(self, step):
        self.captures += 1
        if self.fail_capture:
            raise RuntimeError("operation not permitted when stream is capturing")
        output = torch.empty(0)  # a capture runs nothing: the output is filled by replays

        def replay():
            self.replays += 1
            result = step()
            output.resize_as_(result).copy_(result)

        return replay, output


class CountingStep:
    """A step whose output is its call number."""

    def __init__(self):
        self.calls = 0

    def __call__(self) -> torch.Tensor:
        self.calls += 1
        return torch.tensor([float(self.calls)])


def test_warm_up_then_one_capture_then_replays():
    step, backend = CountingStep(), RecordingBackend()
    captured = CapturedStep(step, backend, warmup=2)
    outputs = [captured() for _ in range(5)]
    assert backend.eager_runs == 2 and backend.captures == 1 and backend.replays == 3
    assert captured.captured and not captured.failed
    # each call returns a copy: later replays do not overwrite what an earlier call returned
    assert len({id(o) for o in outputs}) == 5
    assert outputs[2].item() != outputs[3].item() != outputs[4].item()


def test_reset_recaptures_without_a_new_warm_up():
    backend = RecordingBackend()
    captured = CapturedStep(CountingStep(), backend, warmup=1)
    for _ in range(3):
        captured()
    captured.reset()
    assert not captured.captured
    captured()
    assert backend.eager_runs == 1 and backend.captures == 2


def test_failed_capture_warns_once_and_goes_on_eagerly():
    step, backend = CountingStep(), RecordingBackend(fail_capture=True)
    captured = CapturedStep(step, backend, warmup=1)
    captured()
    with pytest.warns(RuntimeWarning, match="CUDA graph failed .*goes on eagerly"):
        captured()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        captured(), captured()
    assert captured.failed and backend.captures == 1 and backend.replays == 0
    assert step.calls == 4  # the warm-up, the failed capture's step run eagerly, two more


# ------------------------------------------------------------------------------- stages
@pytest.fixture(scope="module")
def cells() -> torch.Tensor:
    return tiny_cells()


def graph_stage(cells, device="cpu") -> GroundGANStage:
    settings = StageSettings(
        max_steps=10, batch_size=16, n_critic=2, lr_generator=1e-3, lr_generator_final=1e-5
    )
    module = copy.deepcopy(tiny_module()).to(device)
    rng = torch.Generator(device=device).manual_seed(0)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="cuda_graphs=True on cpu")
        return GroundGANStage(
            module,
            cells.to(device),
            settings,
            rng,
            performance=PerformanceOptions(cuda_graphs=True),
        )


def test_a_stage_steps_through_its_captured_step(cells):
    eager, graphed = graph_stage(cells), graph_stage(cells)
    assert eager.captured_step is None  # no CUDA graphs off CUDA
    backend = RecordingBackend()
    graphed.captured_step = CapturedStep(graphed.step_body, backend, warmup=2)
    losses = torch.stack([graphed.step() for _ in range(5)])
    assert backend.eager_runs == 2 and backend.captures == 1 and backend.replays == 3
    assert torch.equal(losses, torch.stack([eager.step() for _ in range(5)]))
    for a, b in zip(graphed.optimizers().values(), eager.optimizers().values(), strict=True):
        assert torch.equal(a.param_groups[0]["lr"], b.param_groups[0]["lr"])


def test_learning_rates_change_outside_the_captured_body(cells):
    """A replayed graph repeats what it captured: the schedules must not be part of it."""
    stage = graph_stage(cells)
    lr = stage.generator_optimizer.param_groups[0]["lr"]
    before = lr.clone()
    stage.step_body()
    assert torch.equal(lr, before)
    stage.step()
    assert stage.generator_optimizer.param_groups[0]["lr"] is lr  # changed in place
    assert lr.item() < before.item()


def test_loading_optimizer_state_resets_the_capture(cells):
    stage = graph_stage(cells)
    stage.captured_step = CapturedStep(stage.step_body, RecordingBackend(), warmup=0)
    stage.step()
    assert stage.captured_step.captured
    stage.load_state_dict(stage.state_dict())
    assert not stage.captured_step.captured
    assert all(
        isinstance(o.param_groups[0]["lr"], torch.Tensor) for o in stage.optimizers().values()
    )


class FakeCuda:
    """The parts of ``torch.cuda`` that :class:`CudaGraphBackend` calls, recording the calls
    (the capture runs the step, which a real one does not)."""

    def __init__(self):
        self.calls: list[str] = []
        self.registered: list[torch.Generator] = []
        fake = self

        class Stream:
            def wait_stream(self, other):
                fake.calls.append("wait_stream")

        class CUDAGraph:
            def register_generator_state(self, generator):
                fake.registered.append(generator)

            def replay(self):
                fake.calls.append("replay")

        self.Stream, self.CUDAGraph = Stream, CUDAGraph

    def current_stream(self):
        return self.Stream()

    @contextlib.contextmanager
    def stream(self, stream):
        self.calls.append("side stream")
        yield

    @contextlib.contextmanager
    def graph(self, graph):
        self.calls.append("capture")
        yield


def test_cuda_backend_warms_up_on_a_side_stream_and_registers_the_generator(cells, monkeypatch):
    fake = FakeCuda()
    for name in ("Stream", "CUDAGraph", "current_stream", "stream", "graph"):
        monkeypatch.setattr(torch.cuda, name, getattr(fake, name))
    stage = graph_stage(cells)
    stage.captured_step = CapturedStep(stage.step_body, CudaGraphBackend((stage.rng,)))
    for _ in range(5):
        stage.step()
    assert fake.registered == [stage.rng]
    assert fake.calls == ["wait_stream", "side stream", "wait_stream"] * 3 + [
        "capture",
        "replay",
        "replay",
    ]


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_captured_steps_train_as_the_eager_capture_ready_steps(cells):
    captured = graph_stage(cells, "cuda")
    assert isinstance(captured.captured_step.backend, CudaGraphBackend)
    eager = graph_stage(cells, "cuda")
    eager.captured_step = None
    a = torch.stack([captured.step() for _ in range(6)])
    b = torch.stack([eager.step() for _ in range(6)])
    assert captured.captured_step.captured and not captured.captured_step.failed
    torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)
    for p, q in zip(captured.module.parameters(), eager.module.parameters(), strict=True):
        torch.testing.assert_close(p, q, rtol=1e-4, atol=1e-5)
