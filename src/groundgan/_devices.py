"""Which torch device a model runs on: one rule for every model and the CLI."""

from __future__ import annotations

import torch

from ._errors import InvalidInputError


def resolve_device(device: str | torch.device) -> torch.device:
    """The torch device to use: ``"auto"`` -> CUDA when available, else CPU.

    Raises
    ------
    InvalidInputError
        One line naming the fix: a string torch does not read as a device, or a CUDA device
        where torch has no CUDA (a CPU-only build, or no GPU visible) or no such GPU.
    """
    if str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        resolved = torch.device(device)
    except (RuntimeError, TypeError, ValueError):
        raise InvalidInputError(
            f"device={device!r} is not a torch device: use 'auto', 'cpu', 'cuda' or 'cuda:N'"
        ) from None
    if resolved.type != "cuda":
        return resolved
    if not torch.cuda.is_available():
        why = (
            f"this torch ({torch.__version__}) is a CPU-only build"
            if torch.version.cuda is None
            else "torch sees no CUDA GPU (check the driver and CUDA_VISIBLE_DEVICES)"
        )
        raise InvalidInputError(
            f"device={device!r} but {why}: use device='cpu' or 'auto', or install a CUDA build "
            "of torch that matches your driver"
        )
    if resolved.index is not None and resolved.index >= torch.cuda.device_count():
        raise InvalidInputError(
            f"device={device!r} but torch sees {torch.cuda.device_count()} CUDA GPU(s): use "
            f"'cuda:0' to 'cuda:{torch.cuda.device_count() - 1}', 'cuda' or 'auto'"
        )
    return resolved
