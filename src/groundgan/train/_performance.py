"""Speed paths of the training stages, each with a plain fallback that computes the same thing.

:class:`PerformanceOptions` says which paths a stage uses. The defaults are the fast paths;
:meth:`PerformanceOptions.plain` switches every one of them off (the straightforward
formulation, kept as the reference the fast paths are tested against):

``optimizer``
    AdamW implementation. ``"auto"``: the fused kernel, on CUDA and on the CPU alike (AMSGrad
    included; should a torch build refuse fused AMSGrad on the device, the multi-tensor
    ``foreach`` one, with a warning). ``"fused"``, ``"foreach"`` (bitwise the same result as
    the per-parameter loop on the CPU) and ``"for-loop"`` force one.
``joint_critic_forward``
    One critic pass over the real and fake cells stacked, instead of two passes. Only for
    critics that treat cells independently (no BatchNorm, no per-batch labels); stages declare
    it with ``WGANGPStage.critic_is_per_cell``.
``shared_labeler_pass``
    Stage 2 only: the labeler and anti-labeler losses on fake cells are the same function of
    the same values in the generator loss and in the labelers' own updates (the target
    generators' step does not touch the labelers), so their gradients are taken from the
    generator loss's backward pass instead of from a second forward and backward.
``tf32``
    TF32 matrix multiplications on CUDA, during the stage's steps only (the global setting is
    restored after each step). No effect on the CPU.
``precision``
    ``"fp32"`` or ``"bf16"``: bfloat16 autocast of the forward passes (generator, critic,
    labelers); losses, gradients, weights and optimiser state stay float32. Meant for CUDA and
    for CPUs with bfloat16 matrix instructions; elsewhere it runs with a
    :class:`RuntimeWarning` (usually slower than float32 there).
``cuda_graphs``
    Opt-in. On CUDA, each whole step (critic updates, generator update, labeler updates) is
    captured once in a CUDA graph after a few eager warm-up steps and replayed from then on
    (see :mod:`groundgan.train._graphs`), removing the per-kernel launch cost. The step is
    then computed in its capture-ready form: gradients are zeroed in place instead of freed,
    learning rates are device tensors set in place from the closed-form schedule, AdamW is
    ``capturable``, and bfloat16 autocast does not cache casts. Off CUDA the capture-ready form
    runs eagerly (with a :class:`RuntimeWarning`), which is how it is tested without a GPU.

Every step also runs without a host synchronisation: the training data live on the stage's
device, minibatch indices and all noise are drawn there with the stage's own
:class:`torch.Generator` (:func:`check_resident` refuses anything else), and the losses are
returned as a device tensor.
"""

from __future__ import annotations

import contextlib
import functools
import warnings
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, replace
from typing import Literal

import torch
from torch import Tensor, nn

from .._errors import InvalidInputError

Precision = Literal["fp32", "bf16"]
OptimizerImplementation = Literal["auto", "fused", "foreach", "for-loop"]

PRECISIONS: tuple[str, ...] = ("fp32", "bf16")
OPTIMIZER_IMPLEMENTATIONS: tuple[str, ...] = ("auto", "fused", "foreach", "for-loop")

#: AdamW hyperparameters of the paper (both stages, all networks).
ADAMW_BETAS = (0.5, 0.9)


@dataclass(frozen=True)
class PerformanceOptions:
    """Which speed paths a training stage uses (defaults: all of them, float32).

    Parameters
    ----------
    precision
        ``"fp32"``, or ``"bf16"`` for bfloat16 autocast of the forward passes (meant for CUDA).
    tf32
        Allow TF32 matrix multiplications on CUDA during the steps.
    optimizer
        AdamW implementation: ``"auto"``, ``"fused"``, ``"foreach"`` or ``"for-loop"``.
    joint_critic_forward
        Score real and fake cells in one critic pass (where the critic allows it).
    shared_labeler_pass
        Stage 2: reuse the generator loss's backward pass for the labelers' fake-cell gradients.
    cuda_graphs
        Capture whole steps in CUDA graphs and replay them (CUDA only; opt-in).
    """

    precision: Precision = "fp32"
    tf32: bool = True
    optimizer: OptimizerImplementation = "auto"
    joint_critic_forward: bool = True
    shared_labeler_pass: bool = True
    cuda_graphs: bool = False

    def __post_init__(self) -> None:
        if not isinstance(self.cuda_graphs, bool):
            raise ValueError(f"cuda_graphs must be True or False, got {self.cuda_graphs!r}")
        if self.precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {PRECISIONS}, got {self.precision!r}")
        if self.optimizer not in OPTIMIZER_IMPLEMENTATIONS:
            raise ValueError(
                f"optimizer must be one of {OPTIMIZER_IMPLEMENTATIONS}, got {self.optimizer!r}"
            )

    @classmethod
    def plain(cls, **changes) -> PerformanceOptions:
        """Every speed path off: per-parameter AdamW loop, separate passes, no TF32, fp32, no
        CUDA graphs."""
        options = cls(
            precision="fp32",
            tf32=False,
            optimizer="for-loop",
            joint_critic_forward=False,
            shared_labeler_pass=False,
            cuda_graphs=False,
        )
        return replace(options, **changes)


#: ``precision`` values of the models' ``train()``.
TRAIN_PRECISIONS: tuple[str, ...] = ("fp32", "fp32-strict", "bf16")


def performance_options(precision: str, cuda_graphs: bool) -> PerformanceOptions:
    """The stages' speed paths for a model's ``train(precision=..., cuda_graphs=...)``:
    ``"fp32-strict"`` is float32 with TF32 off.

    Raises
    ------
    InvalidInputError
        An unknown ``precision``, or a ``cuda_graphs`` that is not a bool.
    """
    if precision not in TRAIN_PRECISIONS:
        raise InvalidInputError(f"precision must be one of {TRAIN_PRECISIONS}, got {precision!r}")
    if not isinstance(cuda_graphs, bool):
        raise InvalidInputError(f"cuda_graphs must be True or False, got {cuda_graphs!r}")
    if precision == "fp32-strict":
        return PerformanceOptions(precision="fp32", tf32=False, cuda_graphs=cuda_graphs)
    return PerformanceOptions(precision=precision, cuda_graphs=cuda_graphs)


# ------------------------------------------------------------------------------- residency
def check_resident(module: nn.Module, data: Tensor, rng: torch.Generator) -> torch.device:
    """Check that weights, training data and the random generator share one device.

    Minibatches are then drawn on that device (indices from ``rng``, rows gathered from the
    resident ``data``), so no cell crosses between host and device during training.

    Returns
    -------
    The device.

    Raises
    ------
    ValueError
        Naming what lives elsewhere.
    """
    device = data.device
    if rng.device.type != device.type or not _same_index(rng.device, device):
        raise ValueError(
            f"the stage's random generator is on {rng.device} but the training data are on "
            f"{device}: create it with torch.Generator(device=data.device)"
        )
    for name, tensor in [*module.named_parameters(), *module.named_buffers()]:
        if tensor.device != device:
            raise ValueError(
                f"{name} is on {tensor.device} but the training data are on {device}: "
                "move the module to the data's device first"
            )
    return device


def _same_index(a: torch.device, b: torch.device) -> bool:
    """Same device index, where ``None`` means the current device."""
    if a.type != "cuda":
        return True
    current = torch.cuda.current_device()
    return (current if a.index is None else a.index) == (current if b.index is None else b.index)


# ------------------------------------------------------------------------------- optimisers
def optimizer_flags(
    device: torch.device, implementation: str = "auto", cuda_graphs: bool = False
) -> dict[str, bool]:
    """``foreach``/``fused``/``capturable`` keyword arguments of AdamW for ``implementation``
    on ``device``.

    ``"auto"`` picks the fused kernel where it takes AMSGrad (it does on CUDA and on the CPU
    in torch >= 2.4; otherwise ``foreach`` is used, with a warning). With ``cuda_graphs``,
    the optimiser is ``capturable`` on CUDA.
    """
    if implementation not in OPTIMIZER_IMPLEMENTATIONS:
        raise ValueError(
            f"optimizer must be one of {OPTIMIZER_IMPLEMENTATIONS}, got {implementation!r}"
        )
    if implementation == "auto":
        implementation = "fused" if fused_amsgrad_supported(device.type) else "foreach"
    return {
        "fused": implementation == "fused",
        "foreach": implementation == "foreach",
        "capturable": cuda_graphs and device.type == "cuda",
    }


def takes_tensor_learning_rate(flags: dict[str, bool]) -> bool:
    """Whether AdamW made with ``flags`` accepts its learning rate as a tensor."""
    return bool(flags.get("fused") or flags.get("capturable"))


def learning_rates_to_tensors(optimizer: torch.optim.Optimizer, device: torch.device) -> None:
    """Hold each param group's learning rate as a float32 tensor on ``device`` (in place
    afterwards: a captured step reads it at a fixed address)."""
    for group in optimizer.param_groups:
        lr = group["lr"]
        if not isinstance(lr, Tensor) or lr.device != device:
            group["lr"] = torch.tensor(float(lr), dtype=torch.float32, device=device)


def set_learning_rate(group: dict, value: float) -> None:
    """Set a param group's learning rate: in place when it is a tensor."""
    if isinstance(group["lr"], Tensor):
        group["lr"].fill_(value)
    else:
        group["lr"] = value


def portable_optimizer_state(optimizer: torch.optim.Optimizer) -> dict:
    """``optimizer.state_dict()`` with tensor learning rates as floats, so that a checkpoint
    loads into any stage (eager or captured, on any device)."""
    state = optimizer.state_dict()
    for group in state["param_groups"]:
        for key in ("lr", "initial_lr"):
            if isinstance(group.get(key), Tensor):
                group[key] = float(group[key])
    return state


@functools.cache
def fused_amsgrad_supported(device_type: str) -> bool:
    """Whether fused AdamW with AMSGrad runs on ``device_type`` (one step on a tiny tensor)."""
    try:
        p = nn.Parameter(torch.zeros(2, device=device_type))
        p.grad = torch.ones_like(p)
        torch.optim.AdamW([p], amsgrad=True, fused=True).step()
    except (RuntimeError, ValueError, TypeError) as err:
        warnings.warn(
            f"fused AdamW with AMSGrad is not available on {device_type} ({err}); "
            "using the foreach implementation",
            RuntimeWarning,
            stacklevel=2,
        )
        return False
    return True


def make_optimizer(
    params: Iterable[nn.Parameter],
    lr: float,
    weight_decay: float,
    flags: dict[str, bool] | None = None,
) -> torch.optim.AdamW:
    """AdamW with AMSGrad and betas (0.5, 0.9), as in the paper; ``flags`` from
    :func:`optimizer_flags` (``None``: torch's per-parameter loop)."""
    flags = flags or {"fused": False, "foreach": False}
    return torch.optim.AdamW(
        list(params),
        lr=lr,
        betas=ADAMW_BETAS,
        amsgrad=True,
        weight_decay=weight_decay,
        **flags,
    )


def conform_optimizer(optimizer: torch.optim.Optimizer, flags: dict[str, bool]) -> None:
    """Re-apply ``flags`` after ``load_state_dict`` (which restores the saved ones).

    A checkpoint written with another implementation (or on another device) then continues
    with this stage's one; the step counters move to where that implementation keeps them
    (on the parameter's device as float32 for fused and capturable ones, on the host
    otherwise). Learning rates come back as floats; a stage that holds them as tensors
    converts them again (:func:`learning_rates_to_tensors`).
    """
    for group in optimizer.param_groups:
        group.update(flags)
        if isinstance(group["lr"], Tensor):
            group["lr"] = float(group["lr"])
        on_device = group.get("fused") or group.get("capturable")
        for p in group["params"]:
            state = optimizer.state.get(p, {})
            step = state.get("step")
            if isinstance(step, Tensor):
                state["step"] = (
                    step.to(device=p.device, dtype=torch.float32)
                    if on_device
                    else step.to(device="cpu", dtype=torch.float32)
                )


# ------------------------------------------------------------------------------- precision
def check_precision(precision: str, device: torch.device) -> None:
    """Check ``precision``; warn where bfloat16 autocast is likely a slowdown.

    bfloat16 autocast pays off on CUDA devices and on CPUs with bfloat16 matrix instructions
    (AVX512-BF16 or AMX); elsewhere it runs, with the same numerics, but slower than float32.
    """
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    if precision != "bf16" or device.type == "cuda":
        return
    if device.type == "cpu" and cpu_has_bf16_matmul():
        return
    warnings.warn(
        f"precision='bf16' on {device.type}: bfloat16 autocast is meant for CUDA devices and "
        "CPUs with bfloat16 matrix instructions (AVX512-BF16, AMX); here it is usually slower "
        "than float32",
        RuntimeWarning,
        stacklevel=3,
    )


def cpu_has_bf16_matmul() -> bool:
    """Whether this CPU has bfloat16 matrix instructions (AVX512-BF16 or AMX tiles)."""
    checks = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
    return any(getattr(torch.cpu, name, lambda: False)() for name in checks)


def autocast(
    device: torch.device, precision: str, cache_enabled: bool = True
) -> contextlib.AbstractContextManager:
    """bfloat16 autocast on ``device`` for ``precision="bf16"``; a no-op context otherwise.

    ``cache_enabled=False`` for steps captured in CUDA graphs: PyTorch does not support
    autocast's cache of cast weights under graph capture.
    """
    if precision == "bf16":
        return torch.autocast(
            device_type=device.type, dtype=torch.bfloat16, cache_enabled=cache_enabled
        )
    return contextlib.nullcontext()


def check_cuda_graphs(cuda_graphs: bool, device: torch.device) -> None:
    """Warn when CUDA graphs are asked for off CUDA (the capture-ready step then runs eagerly)."""
    if cuda_graphs and device.type != "cuda":
        warnings.warn(
            f"cuda_graphs=True on {device.type}: CUDA graphs need a CUDA device; the "
            "capture-ready form of the step runs eagerly instead",
            RuntimeWarning,
            stacklevel=3,
        )


@contextlib.contextmanager
def cuda_matmul_precision(device: torch.device, tf32: bool) -> Iterator[None]:
    """Within the block, allow TF32 matmuls and convolutions on CUDA (restored afterwards)."""
    if device.type != "cuda" or not tf32:
        yield
        return
    previous = enable_tf32()
    try:
        yield
    finally:
        restore_tf32(previous)


def enable_tf32() -> tuple[str, bool]:
    """Allow TF32 in float32 matmuls (``"high"`` precision) and cuDNN; returns the old state."""
    previous = (torch.get_float32_matmul_precision(), torch.backends.cudnn.allow_tf32)
    torch.set_float32_matmul_precision("high")
    torch.backends.cudnn.allow_tf32 = True
    return previous


def restore_tf32(previous: tuple[str, bool]) -> None:
    """Undo :func:`enable_tf32`."""
    torch.set_float32_matmul_precision(previous[0])
    torch.backends.cudnn.allow_tf32 = previous[1]
