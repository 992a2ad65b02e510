"""Whole-step CUDA graphs, tested on the CPU: the warm-up, capture, replay and fallback logic
(through a recording backend), the CUDA backend's calls (through a stand-in for torch.cuda),
and what makes a replay equal to an eager step (recorded at torch's dispatcher); on a GPU, the
captured steps against the eager ones."""

from __future__ import annotations

import contextlib
import copy
import warnings

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

from groundgan.train import ControllerStage, GroundGANStage, StageSettings, WGANGPStage
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


def graph_stage(
    cells, device="cpu", stage_cls=GroundGANStage, precision="fp32", performance=None
) -> WGANGPStage:
    """A tiny stage with a decaying learning rate, capture-ready unless told otherwise."""
    settings = StageSettings(
        max_steps=10, batch_size=16, n_critic=2, lr_generator=1e-3, lr_generator_final=1e-5
    )
    module = copy.deepcopy(tiny_module()).to(device)
    rng = torch.Generator(device=device).manual_seed(0)
    if performance is None:
        performance = PerformanceOptions(cuda_graphs=True, precision=precision)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="cuda_graphs=True on cpu")
        return stage_cls(module, cells.to(device), settings, rng, performance=performance)


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


# ------------------------------------------------------------------------------- replayability
PLAIN_VALUES = (int, float, bool, str, type(None), torch.dtype, torch.device, torch.layout)


def describe(value):
    """An operation's argument as a replayed graph sees it: tensors by shape and dtype (their
    values may change), everything else by value (baked into the graph)."""
    if isinstance(value, torch.Tensor):
        return ("tensor", tuple(value.shape), value.dtype)
    if isinstance(value, (list, tuple)):
        return tuple(describe(v) for v in value)
    if isinstance(value, dict):
        return tuple((k, describe(v)) for k, v in value.items())
    if isinstance(value, torch.Generator):
        return ("generator", value.device.type, value.initial_seed())
    return value if isinstance(value, PLAIN_VALUES) else type(value).__name__


class OperationRecorder(TorchDispatchMode):
    """Every operation dispatched (backward passes and optimiser kernels included)."""

    def __init__(self):
        super().__init__()
        self.operations: list[tuple] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        self.operations.append((str(func), describe(args), describe(kwargs)))
        return func(*args, **kwargs)


def persistent_addresses(stage) -> list[int]:
    """Where weights, gradients, optimiser state and learning rates live."""
    tensors = [*stage.module.parameters()]
    tensors += [p.grad for p in stage.module.parameters() if p.grad is not None]
    for optimizer in stage.optimizers().values():
        tensors += [g["lr"] for g in optimizer.param_groups if isinstance(g["lr"], torch.Tensor)]
        tensors += [v for state in optimizer.state.values() for v in state.values()]
    return [t.data_ptr() for t in tensors]


def recorded_steps(stage, n: int = 2) -> tuple[list[list[tuple]], list[list[int]]]:
    operations, addresses = [], []
    for _ in range(n):
        with OperationRecorder() as recorder:
            stage.step_body()
        stage.advance_schedules()
        operations.append(recorder.operations)
        addresses.append(persistent_addresses(stage))
    return operations, addresses


@pytest.mark.filterwarnings("ignore:precision='bf16' on cpu")
@pytest.mark.parametrize("precision", ["fp32", "bf16"])
@pytest.mark.parametrize("stage_cls", [ControllerStage, GroundGANStage], ids=["stage1", "stage2"])
def test_capture_ready_steps_repeat_the_same_operations_on_the_same_memory(
    stage_cls, precision, cells
):
    """What makes replaying a captured step the same as running it again: every step
    dispatches the same operations with the same non-tensor arguments, reads nothing back to
    the host, and keeps weights, gradients, optimiser state and learning rates where they
    were (the graph holds their addresses)."""
    stage = graph_stage(cells, stage_cls=stage_cls, precision=precision)
    stage.step()  # gradients and optimiser state exist from here on, as after the warm-up
    (first, second), (before, after) = recorded_steps(stage)
    assert len(first) > 100 and any("backward" in op[0] for op in first)
    assert first == second
    assert before == after
    assert not any(op[0].startswith("aten._local_scalar_dense") for op in first)  # .item()


def test_the_default_step_is_not_replayable(cells):
    """The recorder tells the difference: the default step passes the decaying learning rate
    to the optimiser kernel as a number."""
    stage = graph_stage(cells, performance=PerformanceOptions())
    stage.step()
    (first, second), _ = recorded_steps(stage)
    differing = {a[0] for a, b in zip(first, second, strict=True) if a != b}
    assert differing == {"aten._fused_adamw_.default"}


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
