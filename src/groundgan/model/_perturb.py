"""In-silico perturbation of TFs with exact replay of the control cells.

A :class:`ReplayState` holds everything that determined a set of simulated cells (one
:class:`~groundgan.nn.GenerationRecord` per block of ``sample_block_size`` cells): the causal
controller's noise, the target generators' noise, the pre-LSN TF expression, the per-cell LSN
scale and the BatchNorm statistics of the control pass. It is drawn exactly like
:meth:`GroundGAN.sample` (same generator, same order), so the control cells replayed from it are
bitwise those of ``model.sample(n_cells, seed)``.

A perturbation changes the named TFs and re-runs only the target generators, level by level,
replaying every other input, the LSN scale and the control pass's BatchNorm statistics. A root
TF is changed at the causal controller's output; a TF regulated by other TFs is clamped (its
generator's output replaced: the do-operator), so the change reaches its descendants only. Replaying the statistics
matters: recomputed batch statistics would subtract a TF that is set to one constant in every
cell, so a knockout and an overexpression would give the same cells.
"""

from __future__ import annotations

import copy
import hashlib
import io
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import numpy as np
import pandas as pd
import torch
from anndata import AnnData
from mudata import MuData

from .._files import atomic_write_bytes
from .._keys import CONTROL_MODALITY, PERTURBATIONS_KEY
from .._perturbation_spec import (
    Perturbation,
    Perturbations,
    adopt_pull_on_update,
    parse_perturbation_specs,
    perturbation_table,
    perturbation_var_columns,
)
from .._seeds import check_seed, resolve_seed
from .._validation import InvalidInputError, check_bool, check_positive_int, format_names
from .._version import __version__
from ..nn import GenerationRecord
from . import _sampling

if TYPE_CHECKING:
    from ._protocols import GeneratorModel

__all__ = ["Perturbation", "Perturbations", "ReplayState", "perturb", "replay_state"]

CONTROL = CONTROL_MODALITY
STATE_KIND = "groundgan.ReplayState"
STATE_FORMAT = 1
#: Parts of the module that determine generated cells (and so enter the fingerprint).
GENERATION_PREFIXES = ("controller.", "target_generators.", "ema.", "tf_index", "target_index")


# perturbations ---------------------------------------------------------------------------
def parse_perturbations(
    model: GeneratorModel, perturbations: Perturbations, mode: str
) -> list[Perturbation]:
    """Validate ``perturbations`` (a dict or a list of dicts) into :class:`Perturbation` s of
    the model's TFs."""
    return parse_perturbation_specs(perturbations, mode, lambda gene: check_tf(model, gene))


def check_tf(model: GeneratorModel, gene) -> str:
    """``gene`` must be one of the model's TFs."""
    layout = model.layout
    if not isinstance(gene, str):
        raise InvalidInputError(f"gene names must be strings, got {gene!r}")
    if gene in layout.tfs:
        return gene
    if gene in layout.targets:
        raise InvalidInputError(
            f"{gene!r} is a target gene, not a TF; only TFs can be perturbed "
            f"(TFs: {format_names(layout.tfs)})"
        )
    raise InvalidInputError(
        f"gene {gene!r} is not one of the model's genes (TFs: {format_names(layout.tfs)})"
    )


# replay state ----------------------------------------------------------------------------
def model_fingerprint(model: GeneratorModel) -> str:
    """SHA-256 of what determines generated cells: genes, GRN layout, block size, library size
    and the weights of the causal controller and the target generators."""
    h = hashlib.sha256()
    layout = model.layout
    header = {
        "var_names": list(layout.var_names),
        "tfs": list(layout.tfs),
        "library_size": model.library_size,
        "sample_block_size": model.sample_block_size,
    }
    h.update(json.dumps(header, sort_keys=True).encode())
    state = model.module.state_dict()
    for name in sorted(state):
        if not name.startswith(GENERATION_PREFIXES):
            continue
        tensor = state[name].detach().cpu().contiguous()
        h.update(f"{name}:{tensor.dtype}:{tuple(tensor.shape)}".encode())
        h.update(tensor.reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


@dataclass(frozen=True, eq=False, repr=False)
class ReplayState:
    """What determines ``n_cells`` simulated cells, for exact and reusable replay.

    Obtain it with :meth:`GroundGAN.replay_state` and pass it to :meth:`GroundGAN.perturb`
    (``state=``); keep it on disk with :meth:`save` / :meth:`load`.

    Attributes
    ----------
    records
        One :class:`~groundgan.nn.GenerationRecord` per block of ``block_size`` cells (the last
        block is held in full; cells past ``n_cells`` are dropped from the output), on the CPU.
    n_cells
        Number of cells it describes: those of ``model.sample(n_cells, seed)``.
    seed
        Seed of the cells it describes.
    block_size
        The model's ``sample_block_size`` when the state was drawn (cells per record).
    var_names
        The model's genes.
    fingerprint
        :func:`model_fingerprint` of the model that drew it; a state is refused by any other
        model (or by the same model after further training).

    Examples
    --------
    >>> state = model.replay_state(1000, seed=0)
    >>> state.save("state.npz")
    >>> state = gg.model.ReplayState.load("state.npz")  # doctest: +SKIP
    >>> ko = model.perturb({"SPI1": 0.0}, state=state)
    """

    records: tuple[GenerationRecord, ...]
    n_cells: int
    seed: int
    block_size: int
    var_names: tuple[str, ...]
    fingerprint: str

    @property
    def n_blocks(self) -> int:
        return len(self.records)

    def __repr__(self) -> str:
        return (
            f"ReplayState(n_cells={self.n_cells}, seed={self.seed}, block_size={self.block_size}, "
            f"n_blocks={self.n_blocks}, genes={len(self.var_names)}, "
            f"model={self.fingerprint[:12]})"
        )

    def check(self, model: GeneratorModel) -> None:
        """Refuse a state that ``model`` did not draw (genes, block size or weights differ).

        Parameters
        ----------
        model
            The model the state is about to be replayed on.

        Raises
        ------
        InvalidInputError
            Naming what differs.
        """
        if list(self.var_names) != list(model.layout.var_names):
            raise InvalidInputError(
                "replay state is from another model: its genes differ from this model's"
            )
        if self.block_size != model.sample_block_size:
            raise InvalidInputError(
                f"replay state is from another model: block size {self.block_size}, this model "
                f"samples in blocks of {model.sample_block_size}"
            )
        fingerprint = model_fingerprint(model)
        if fingerprint != self.fingerprint:
            raise InvalidInputError(
                "replay state is from another model (or from this one before further training): "
                f"model fingerprint {self.fingerprint[:12]}..., this model's {fingerprint[:12]}..."
            )

    # files -------------------------------------------------------------------------------
    def save(self, path: str | Path) -> None:
        """Write the state to an ``.npz`` file at ``path`` (used as given; no pickles).

        Parameters
        ----------
        path
            The file to write (atomically; an existing file is replaced).

        Examples
        --------
        >>> model.replay_state(1000, seed=0).save("state.npz")
        """
        arrays: dict[str, np.ndarray] = {"meta": np.array(json.dumps(self._meta()))}
        arrays["var_names"] = np.array(self.var_names, dtype=str)
        for b, record in enumerate(self.records):
            arrays.update(_record_arrays(f"b{b}", record))
        buffer = io.BytesIO()
        np.savez(buffer, **arrays)
        atomic_write_bytes(Path(path), buffer.getvalue())

    @classmethod
    def load(cls, path: str | Path) -> ReplayState:
        """Read a state written by :meth:`save` (``allow_pickle=False``).

        Parameters
        ----------
        path
            An ``.npz`` file written by :meth:`save`.

        Returns
        -------
        ReplayState
            The state, as it was saved.

        Examples
        --------
        >>> state = ReplayState.load("state.npz")  # doctest: +SKIP
        """
        path = Path(path)
        try:
            with np.load(path, allow_pickle=False) as f:
                arrays = {k: f[k] for k in f.files}
        except FileNotFoundError:
            raise
        except (OSError, ValueError) as err:
            raise InvalidInputError(f"{path} is not a groundgan replay state ({err})") from err
        try:
            meta = json.loads(str(arrays["meta"]))
            if meta.get("kind") != STATE_KIND:
                raise KeyError("kind")
            if meta["format"] > STATE_FORMAT:
                raise InvalidInputError(
                    f"{path}: replay state format {meta['format']} is newer than this groundgan "
                    f"({__version__}) reads"
                )
            records = tuple(
                _record_from_arrays(arrays, f"b{b}", meta) for b in range(meta["n_blocks"])
            )
            state = cls(
                records=records,
                n_cells=int(meta["n_cells"]),
                seed=int(meta["seed"]),
                block_size=int(meta["block_size"]),
                var_names=tuple(map(str, arrays["var_names"])),
                fingerprint=str(meta["fingerprint"]),
            )
        except (KeyError, TypeError, json.JSONDecodeError) as err:
            raise InvalidInputError(
                f"{path} is not a groundgan replay state (missing {err})"
            ) from err
        state._check_shapes(path)
        return state

    def _meta(self) -> dict:
        first = self.records[0]
        return {
            "kind": STATE_KIND,
            "format": STATE_FORMAT,
            "version": __version__,
            "n_cells": self.n_cells,
            "seed": self.seed,
            "block_size": self.block_size,
            "n_blocks": self.n_blocks,
            "n_controller_stats": len(first.controller_stats),
            "n_target_stats": len(first.target_stats),
            "fingerprint": self.fingerprint,
        }

    def _check_shapes(self, path: Path) -> None:
        expected_blocks = -(-self.n_cells // self.block_size)
        rows = {r.controller_noise.shape[0] for r in self.records}
        if self.n_blocks != expected_blocks or rows != {self.block_size}:
            raise InvalidInputError(
                f"{path}: inconsistent replay state ({self.n_blocks} blocks of {sorted(rows)} "
                f"cells for {self.n_cells} cells in blocks of {self.block_size})"
            )


RECORD_TENSORS = ("controller_noise", "target_noise", "tf_expression", "lsn_scale")
RECORD_STATS = ("controller_stats", "target_stats")


def _record_arrays(prefix: str, record: GenerationRecord) -> dict[str, np.ndarray]:
    out = {f"{prefix}.{k}": getattr(record, k).cpu().numpy() for k in RECORD_TENSORS}
    for kind in RECORD_STATS:
        for i, (mean, var) in enumerate(getattr(record, kind)):
            out[f"{prefix}.{kind}.{i}.mean"] = mean.cpu().numpy()
            out[f"{prefix}.{kind}.{i}.var"] = var.cpu().numpy()
    return out


def _record_from_arrays(arrays: dict, prefix: str, meta: dict) -> GenerationRecord:
    def tensor(key: str) -> torch.Tensor:
        return torch.from_numpy(np.array(arrays[key]))

    tensors = [tensor(f"{prefix}.{k}") for k in RECORD_TENSORS]
    stats = [
        [
            (tensor(f"{prefix}.{kind}.{i}.mean"), tensor(f"{prefix}.{kind}.{i}.var"))
            for i in range(meta[f"n_{kind}"])
        ]
        for kind in RECORD_STATS
    ]
    return GenerationRecord(*tensors, *stats)


def _record_to(record: GenerationRecord, device: torch.device) -> GenerationRecord:
    tensors = [getattr(record, k).to(device) for k in RECORD_TENSORS]
    stats = [[(m.to(device), v.to(device)) for m, v in getattr(record, k)] for k in RECORD_STATS]
    return GenerationRecord(*tensors, *stats)


def check_trained(model: GeneratorModel, allow_untrained: bool, what: str) -> None:
    """Refuse an untrained model (stage 2 has no steps) unless ``allow_untrained``."""
    if not check_bool(allow_untrained, "allow_untrained") and not model.is_trained_:
        raise InvalidInputError(
            f"the model is not trained (stage 2 has no steps), so {what} would give untrained "
            "cells: call model.train() first, or pass allow_untrained=True to get them anyway"
        )


def replay_state(
    model: GeneratorModel, n_cells: int, seed: int | None, allow_untrained: bool = False
) -> ReplayState:
    """Draw the replay state of ``model.sample(n_cells, seed)`` (see :class:`ReplayState`).

    The noise comes from :func:`groundgan.model._sampling.noise_blocks`, as in ``sample()``.
    """
    check_trained(model, allow_untrained, "replay_state()")
    n_cells = check_positive_int(n_cells, "n_cells")
    seed = resolve_seed(seed)
    records = []
    for z, noise, _ in _sampling.noise_blocks(model, n_cells, seed):
        _, record = model.module.generate_recorded(z, noise)
        records.append(_record_to(record, torch.device("cpu")))
    return ReplayState(
        records=tuple(records),
        n_cells=n_cells,
        seed=seed,
        block_size=model.sample_block_size,
        var_names=tuple(model.layout.var_names),
        fingerprint=model_fingerprint(model),
    )


def resolve_state(
    model: GeneratorModel,
    n_cells: int | None,
    seed: int | None,
    state: ReplayState | None,
    allow_untrained: bool = False,
) -> ReplayState:
    """The given state (checked against ``model``, ``n_cells`` and ``seed``) or a new one."""
    if state is None:
        if n_cells is None:
            raise InvalidInputError("n_cells is required (or pass a replay state as state=)")
        seed = 0 if seed is None else seed  # sample()'s default
        return replay_state(model, n_cells, seed, allow_untrained)
    if not isinstance(state, ReplayState):
        raise InvalidInputError(f"state must be a ReplayState, got {type(state).__name__}")
    if n_cells is not None and n_cells != state.n_cells:
        raise InvalidInputError(
            f"n_cells={n_cells!r} disagrees with the replay state, which holds {state.n_cells} "
            "cells: pass n_cells=None with state="
        )
    if seed is not None and check_seed(seed) != state.seed:
        raise InvalidInputError(
            f"seed={seed!r} disagrees with the replay state, drawn with seed {state.seed}: "
            "pass seed=None with state="
        )
    state.check(model)
    return state


# replay ----------------------------------------------------------------------------------
def perturbed_block(
    model: GeneratorModel,
    record: GenerationRecord,
    control: torch.Tensor,
    control_raw: torch.Tensor,
    perturbation: Perturbation,
) -> torch.Tensor:
    """One block of perturbed cells (output units), everything but the perturbed TFs and
    their descendants replayed.

    ``set``: the TF's output value becomes the value (its pre-LSN value is the value divided by
    the cell's LSN scale); ``scale``: the TF's value is multiplied. A root TF is changed at the
    causal controller's output; a regulated TF is clamped: its own generator's output is
    replaced before its descendants read it (the do-operator). The TF columns of the output are
    written exactly (no rounding through the LSN scale). Cells whose control pass was all zero
    (LSN scale 0) have no output scale and are left unchanged.
    """
    layout, module = model.layout, model.module
    tfs = record.tf_expression.clone()
    scale = record.lsn_scale[:, 0]
    live = scale > 0
    safe_scale = torch.where(live, scale, torch.ones_like(scale))
    clamped, clamp_values = [], []
    for gene, value in perturbation.values.items():
        column = layout.var_names.index(gene)
        before = control_raw[:, column]
        after = (
            torch.where(live, value / safe_scale, before)
            if perturbation.mode == "set"
            else before * value
        )
        if gene in layout.roots:
            tfs[:, layout.roots.index(gene)] = after
        else:
            clamped.append(layout.targets.index(gene))
            clamp_values.append(after)
    clamp = None
    if clamped:
        clamp = (torch.as_tensor(clamped, device=tfs.device), torch.stack(clamp_values, dim=1))
    cells = module.replay(record, tfs, clamp)
    for gene, value in perturbation.values.items():
        column = layout.var_names.index(gene)
        if perturbation.mode == "set":
            cells[:, column] = torch.where(live, torch.full_like(scale, value), control[:, column])
        else:
            cells[:, column] = control[:, column] * value
    return cells


def replay_cells(
    model: GeneratorModel, state: ReplayState, perturbations: Sequence[Perturbation]
) -> tuple[np.ndarray, list[np.ndarray], np.ndarray]:
    """Control cells, perturbed cells (one array per perturbation) and the all-zero flags."""
    module, device, n = model.module, model.device, state.n_cells
    control_blocks, zero_blocks = [], []
    perturbed_blocks: list[list[np.ndarray]] = [[] for _ in perturbations]
    with module.generating():
        for record in state.records:
            record = _record_to(record, device)
            control_raw = module.replay_raw(record)
            control = control_raw * record.lsn_scale
            control_blocks.append(control.float().cpu().numpy())
            zero_blocks.append((record.lsn_scale[:, 0] == 0).cpu().numpy())
            for out, perturbation in zip(perturbed_blocks, perturbations, strict=True):
                cells = perturbed_block(model, record, control, control_raw, perturbation)
                out.append(cells.float().cpu().numpy())
    return (
        np.concatenate(control_blocks)[:n],
        [np.concatenate(blocks)[:n] for blocks in perturbed_blocks],
        np.concatenate(zero_blocks)[:n],
    )


# MuData ----------------------------------------------------------------------------------
def modality(
    model: GeneratorModel,
    name: str,
    X: np.ndarray,
    zero: np.ndarray,
    seed: int,
    perturbation: Perturbation | None,
) -> AnnData:
    """An AnnData of one modality: obs ``"<name>:sim_<i>"`` with ``obs["cell"] = "sim_<i>"``."""
    obs, var, uns = _sampling.simulated_obs_var(model, X.shape[0], seed)
    cells = obs.index.to_numpy()
    obs.index = pd.Index([f"{name}:{c}" for c in cells])
    obs["cell"] = cells
    obs["perturbation"] = name
    obs["zero_cell"] = zero
    tfs = [] if perturbation is None else list(perturbation.values)
    for column, values in perturbation_var_columns(model.layout.grn, tfs, var.index).items():
        var[column] = values
    if perturbation is not None:
        uns[PERTURBATIONS_KEY] = perturbation_table([perturbation])
    return AnnData(X=X, obs=obs, var=var, uns=uns)


def to_mudata(
    model: GeneratorModel,
    state: ReplayState,
    perturbations: Sequence[Perturbation],
    control: np.ndarray,
    perturbed: Sequence[np.ndarray],
    zero: np.ndarray,
    mode: str,
) -> MuData:
    mods = {CONTROL: modality(model, CONTROL, control, zero, state.seed, None)}
    for perturbation, X in zip(perturbations, perturbed, strict=True):
        mods[perturbation.name] = modality(
            model, perturbation.name, X, zero, state.seed, perturbation
        )
    # shared genes (axis=1); obs/var columns are pulled explicitly (mudata >= 0.3 semantics)
    adopt_pull_on_update()
    mdata = MuData(mods, axis=1)
    mdata.pull_obs()
    mdata.var["grn_role"] = mods[CONTROL].var["grn_role"]
    info = copy.deepcopy(mods[CONTROL].uns["groundgan"])
    info.update(n_cells=state.n_cells, mode=mode, model_fingerprint=state.fingerprint)
    mdata.uns["groundgan"] = info
    mdata.uns["groundgan_grn"] = model.grn
    mdata.uns[PERTURBATIONS_KEY] = perturbation_table(perturbations)
    return mdata


def perturb(
    model: GeneratorModel,
    perturbations: Perturbations,
    n_cells: int | None,
    seed: int | None,
    mode: Literal["set", "scale"],
    state: ReplayState | None,
    allow_untrained: bool = False,
) -> MuData:
    """Matched control and perturbed cells; see :meth:`GroundGAN.perturb`."""
    check_trained(model, allow_untrained, "perturb()")
    parsed = parse_perturbations(model, perturbations, mode)
    if n_cells is not None:
        n_cells = check_positive_int(n_cells, "n_cells")
    state = resolve_state(model, n_cells, seed, state, allow_untrained=True)  # checked above
    control, perturbed, zero = replay_cells(model, state, parsed)
    return to_mudata(model, state, parsed, control, perturbed, zero, mode)
