"""What the model's helpers (sampling, perturbation, monitoring, files) need of a model.

The helpers take any object with these attributes rather than the :class:`GroundGAN` class,
so that they sit below it: ``_groundgan`` imports them, and none of them imports
``_groundgan`` (not even for type checking).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    import pandas as pd
    import torch
    from anndata import AnnData

    from ..nn import GroundGANModule
    from ._setup import GRNLayout


class GeneratorModel(Protocol):
    """A model that generates cells block by block from its GRN-wired module."""

    module: GroundGANModule
    layout: GRNLayout
    library_size: float
    sample_block_size: int
    steps_: dict[str, int]
    init_params_: dict[str, Any]

    @property
    def device(self) -> torch.device: ...

    @property
    def grn(self) -> pd.DataFrame: ...

    @property
    def is_trained_(self) -> bool: ...


class TrainableModel(GeneratorModel, Protocol):
    """A :class:`GeneratorModel` that trains on cells and is saved as a model directory."""

    adata: AnnData | None
    _layer: str | None
    train_record_: dict[str, Any]

    def _state(self) -> dict[str, Any]: ...
