"""Whole training steps captured once in a CUDA graph and replayed.

A training step launches hundreds of small kernels (five critic updates, each with the
gradient penalty's double backward, a generator update, the labelers' updates and every
optimiser step). On a GPU the launch cost of those kernels, not their arithmetic, can bound
the step rate; a CUDA graph replays all of them with one launch.

:class:`CapturedStep` runs a step function eagerly for a few warm-up calls (on a side stream,
so that gradients, optimiser state and cuBLAS workspaces exist before capture), captures the
next call and replays the graph from then on. The step function must be capture-ready: no
host synchronisation, tensors at fixed addresses (gradients zeroed in place, learning rates
as device tensors set in place), and all randomness from generators registered with the
graph. :class:`~groundgan.train.WGANGPStage` computes such a step when
``PerformanceOptions(cuda_graphs=True)``.

The graph mechanics are behind :class:`GraphBackend` so that the warm-up, capture, replay and
fallback logic is tested on the CPU with a backend that "captures" by remembering the function.
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Callable, Iterator
from typing import Protocol

import torch
from torch import Tensor

#: Eager calls before the capture (PyTorch's guidance for whole-network capture).
DEFAULT_WARMUP_STEPS = 3

StepFunction = Callable[[], Tensor]


class GraphBackend(Protocol):
    """How a step is warmed up and captured."""

    def run_eager(self, step: StepFunction) -> Tensor:
        """Run ``step`` once without capturing it."""

    def capture(self, step: StepFunction) -> tuple[Callable[[], None], Tensor]:
        """Capture ``step`` without running it; return the replay function and the step's
        static output (overwritten by each replay)."""


class CudaGraphBackend:
    """CUDA graphs; ``generators`` are the step's random generators (registered with the graph
    so that every replay draws new numbers from them)."""

    def __init__(self, generators: tuple[torch.Generator, ...]):
        self.generators = generators

    def run_eager(self, step: StepFunction) -> Tensor:
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side), _quiet_capturable_optimizers():
            out = step()
        torch.cuda.current_stream().wait_stream(side)
        return out

    def capture(self, step: StepFunction) -> tuple[Callable[[], None], Tensor]:
        graph = torch.cuda.CUDAGraph()
        for generator in self.generators:
            graph.register_generator_state(generator)
        with torch.cuda.graph(graph):
            out = step()
        return graph.replay, out  # the bound method keeps the graph and its memory pool alive


class CapturedStep:
    """Call ``step`` through a captured graph: ``warmup`` eager calls, then capture and replay.

    Each call performs one step and returns a fresh copy of its output. Should the capture
    fail, a :class:`RuntimeWarning` says why and every later call runs ``step`` eagerly.

    Parameters
    ----------
    step
        The capture-ready step function.
    backend
        How to warm up and capture (:class:`CudaGraphBackend` on CUDA).
    warmup
        Eager calls before the capture.
    """

    def __init__(
        self, step: StepFunction, backend: GraphBackend, warmup: int = DEFAULT_WARMUP_STEPS
    ):
        self.step, self.backend, self.warmup = step, backend, warmup
        self.eager_calls = 0
        self.failed = False
        self._replay: Callable[[], None] | None = None
        self._output: Tensor | None = None

    @property
    def captured(self) -> bool:
        return self._replay is not None

    def __call__(self) -> Tensor:
        if self.failed:
            return self.step()
        if self._replay is None:
            if self.eager_calls < self.warmup:
                self.eager_calls += 1
                return self.backend.run_eager(self.step)
            try:
                self._replay, self._output = self.backend.capture(self.step)
            except RuntimeError as err:
                self.failed = True
                warnings.warn(
                    f"capturing the training step in a CUDA graph failed ({err}); training "
                    "goes on eagerly",
                    RuntimeWarning,
                    stacklevel=2,
                )
                return self.step()
        self._replay()
        return self._output.clone()

    def reset(self) -> None:
        """Forget the graph (the tensors it reads were replaced); the next call recaptures."""
        self._replay, self._output = None, None


@contextlib.contextmanager
def _quiet_capturable_optimizers() -> Iterator[None]:
    """Silence torch's warning that a capturable optimiser steps uncaptured (the warm-up does
    that on purpose)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*capturable=True.*")
        yield
