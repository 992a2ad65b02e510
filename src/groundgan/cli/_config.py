"""The configuration file of ``groundgan run``: schema, reading, validation, step hashes.

A configuration is a TOML file with one table per section (``[run]``, ``[data]``,
``[preprocess]``, ``[grn]``, ``[model]``, ``[train]``, ``[sample]``, ``[evaluate]``,
``[perturb]``). Every key is checked against the schema below: unknown sections and keys,
values of the wrong type and missing files are refused with a one-line :class:`ConfigError`
that names the section and the key. The ``[model]`` and ``[train]`` sections take the keyword
arguments of :class:`groundgan.GroundGAN` and :meth:`groundgan.GroundGAN.train`, read from their
signatures, so the configuration follows the model's API.

Relative input paths (``[data] path``, ``[grn] path``, ``[grn] tfs``) are resolved against the
folder of the configuration file; the run directory (``[run] output``) against the current
directory, so a run writes where it is started, not next to a shared configuration file.
"""

from __future__ import annotations

import copy
import hashlib
import inspect
import json
import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import tomllib

__all__ = [
    "DATASETS",
    "SECTIONS",
    "STEPS",
    "Config",
    "ConfigError",
    "config_from_dict",
    "load_config",
    "parse_override",
]

#: The steps of ``groundgan run``, in pipeline order.
STEPS = ("preprocess", "grn", "train", "sample", "evaluate", "perturb")

#: Data sets of :mod:`groundgan.datasets` that ``[data] dataset`` can name.
DATASETS = ("pbmc68k_reduced", "mouse_10k_subset", "pbmc68k", "paul15", "dahlin18", "tumor_all")

#: Steps whose outputs a step reads (its hash includes theirs).
UPSTREAM = {
    "preprocess": (),
    "grn": ("preprocess",),
    "train": ("grn",),
    "sample": ("train",),
    "evaluate": ("sample",),
    "perturb": ("train",),
}


class ConfigError(ValueError):
    """An invalid configuration; the message names the section and the key."""


# ----------------------------------------------------------------------------- value kinds


def _type_name(value: Any) -> str:
    return {
        bool: "boolean",
        int: "integer",
        float: "float",
        str: "string",
        list: "array",
        dict: "table",
    }.get(type(value), type(value).__name__)


def _describe(value: Any) -> str:
    text = repr(value)
    if len(text) > 60:
        text = text[:57] + "..."
    return f"{text} ({_type_name(value)})"


@dataclass(frozen=True)
class Kind:
    """A kind of value: a name for messages and a checker returning the normalised value."""

    name: str
    check: Callable[[Any], Any]


class _Mismatch(Exception):
    """Raised by a checker; turned into a :class:`ConfigError` that names section and key."""


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_number(v: Any) -> bool:
    return (isinstance(v, (int, float)) and not isinstance(v, bool)) and math.isfinite(v)


def _check_int(v):
    if not _is_int(v):
        raise _Mismatch
    return v


def _check_positive_int(v):
    if not _is_int(v) or v <= 0:
        raise _Mismatch
    return v


def _check_nonnegative_int(v):
    if not _is_int(v) or v < 0:
        raise _Mismatch
    return v


def _check_float(v):
    if not _is_number(v):
        raise _Mismatch
    return float(v)


def _check_positive_float(v):
    if not _is_number(v) or v <= 0:
        raise _Mismatch
    return float(v)


def _check_bool(v):
    if not isinstance(v, bool):
        raise _Mismatch
    return v


def _check_str(v):
    if not isinstance(v, str) or not v:
        raise _Mismatch
    return v


def _check_int_list(v):
    if not isinstance(v, list) or not v or not all(_is_int(x) and x > 0 for x in v):
        raise _Mismatch
    return list(v)


def _check_steps_list(v):
    if not isinstance(v, list) or not v or not all(x in (1, 2) for x in v):
        raise _Mismatch
    return list(v)


def _check_int_or_auto(v):
    if v == "auto" or (_is_int(v) and v > 0):
        return v
    raise _Mismatch


def _check_float_or_auto(v):
    if v == "auto" or (_is_number(v) and v > 0):
        return v if v == "auto" else float(v)
    raise _Mismatch


def _check_sigma(v):
    if v in ("real", "pooled") or (_is_number(v) and v > 0):
        return v if isinstance(v, str) else float(v)
    raise _Mismatch


def _check_optional_positive_int(v):
    if v is None or v == 0:  # TOML has no null: 0 stands for "not set" where documented
        return None
    return _check_positive_int(v)


def _check_perturbations(v):
    """A list of ``{TF: value}`` tables (one perturbed modality each)."""
    if isinstance(v, dict):
        v = [v]
    if not isinstance(v, list):
        raise _Mismatch
    result = []
    for item in v:
        if not isinstance(item, dict) or not item:
            raise _Mismatch
        if not all(isinstance(k, str) and _is_number(x) and x >= 0 for k, x in item.items()):
            raise _Mismatch
        result.append({k: float(x) for k, x in item.items()})
    return result


def _check_str_list(v):
    if not isinstance(v, list) or not v or not all(isinstance(x, str) for x in v):
        raise _Mismatch
    return list(v)


def _choice(*choices: str) -> Kind:
    def check(v):
        if v not in choices:
            raise _Mismatch
        return v

    return Kind("one of " + ", ".join(repr(c) for c in choices), check)


INT = Kind("an integer", _check_int)
POSITIVE_INT = Kind("a positive integer", _check_positive_int)
NONNEGATIVE_INT = Kind("a non-negative integer", _check_nonnegative_int)
FLOAT = Kind("a number", _check_float)
POSITIVE_FLOAT = Kind("a positive number", _check_positive_float)
BOOL = Kind("true or false", _check_bool)
STRING = Kind("a non-empty string", _check_str)
PATH = Kind("a path (string)", _check_str)
INT_LIST = Kind("an array of positive integers", _check_int_list)
STAGES = Kind("an array of stage numbers (1, 2)", _check_steps_list)
INT_OR_AUTO = Kind('a positive integer or "auto"', _check_int_or_auto)
FLOAT_OR_AUTO = Kind('a positive number or "auto"', _check_float_or_auto)
OPTIONAL_POSITIVE_INT = Kind("a positive integer (0: not set)", _check_optional_positive_int)
STRING_LIST = Kind("an array of strings", _check_str_list)
PERTURBATIONS = Kind(
    "an array of tables {TF = value, ...} with values >= 0, e.g. "
    "[{SPI1 = 0.0}, {SPI1 = 0.0, IRF8 = 0.0}]",
    _check_perturbations,
)


@dataclass(frozen=True)
class Option:
    """One key of a section: its kind, default (``None``: not set) and help text."""

    kind: Kind
    default: Any = None
    help: str = ""


# ----------------------------------------------------------------------------- schema

RUN = {
    "output": Option(
        PATH,
        "groundgan_run",
        "run directory (outputs, checkpoints, step markers); relative to the current directory",
    ),
    "threads": Option(
        NONNEGATIVE_INT, 0, "torch CPU threads (0: torch's default, all available cores)"
    ),
}

DATA = {
    "dataset": Option(
        _choice(*DATASETS), None, "a data set of groundgan.datasets (exclusive with path)"
    ),
    "path": Option(
        PATH, None, "an .h5ad file of raw counts, cells x genes (exclusive with dataset)"
    ),
    "layer": Option(STRING, None, "layer holding the raw counts instead of X"),
    "obs_key": Option(STRING, None, "keep only cells whose obs[obs_key] is in obs_values"),
    "obs_values": Option(STRING_LIST, None, "see obs_key"),
}

PREPROCESS = {
    "n_top_genes": Option(POSITIVE_INT, 1000, "highly variable genes kept"),
    "library_size": Option(POSITIVE_FLOAT, 20_000.0, "total per cell after normalisation"),
    "min_genes": Option(NONNEGATIVE_INT, 10, "cells need non-zero counts in this many genes"),
    "min_cells": Option(NONNEGATIVE_INT, 3, "genes need non-zero counts in this many cells"),
    "n_test": Option(POSITIVE_INT, 1000, "held-out test cells (evaluation)"),
    "n_validation": Option(
        NONNEGATIVE_INT, 0, "validation cells, monitored during training (0: none)"
    ),
    "seed": Option(INT, 0, "seed of the train/validation/test split"),
}

GRN = {
    "path": Option(
        PATH, None, "a GRN table (tf, target[, importance]) to impose instead of inferring one"
    ),
    "species": Option(_choice("human", "mouse"), "human", "AnimalTFDB TF list of the species"),
    "tfs": Option(
        PATH, None, "a TF list file (one name per line, or a table with a Symbol column)"
    ),
    "k": Option(POSITIVE_INT, 15, "regulators per target"),
    "strategy": Option(
        _choice("top", "positive_control", "negative_control"), "top", "which ranks become edges"
    ),
    "tf_targets": Option(
        BOOL, False, "let TFs be targets of TFs: a cascade GRN, made acyclic (not the paper)"
    ),
    "method": Option(STRING, "grnboost2", "GRN inference method (gg.grn.importance_table)"),
    "seed": Option(INT, 0, "seed of the inference"),
}

SAMPLE = {
    "n_cells": Option(POSITIVE_INT, 1000, "cells to simulate"),
    "seed": Option(INT, 0, "seed of the simulated cells"),
    "chunk_size": Option(
        OPTIONAL_POSITIVE_INT, None, "stream to disk this many cells at a time (0: in memory)"
    ),
}

EVALUATE_OWN = {
    "enabled": Option(BOOL, True, "run the evaluation step"),
    "n_cells": Option(
        OPTIONAL_POSITIVE_INT, None, "simulated cells evaluated (the first n; 0: all)"
    ),
    "plot": Option(BOOL, True, "also write embedding.png (joint t-SNE of real and simulated)"),
}

PERTURB = {
    "perturbations": Option(PERTURBATIONS, [], "perturbed modalities; empty: no perturb step"),
    "mode": Option(_choice("set", "scale"), "set", '"set" (0: knockout) or "scale" (2: twofold)'),
    "n_cells": Option(POSITIVE_INT, 1000, "control cells (those of sample(n_cells, seed))"),
    "seed": Option(INT, 0, "seed of the cells"),
}


#: Explicit kinds of keyword arguments of the model, train() and evaluate(); other keywords
#: of their signatures get the kind of their default value.
_KNOWN_KINDS = {
    "latent_dim": POSITIVE_INT,
    "controller_hidden": INT_LIST,
    "critic_hidden": INT_LIST,
    "labeler_hidden": INT_LIST,
    "depth": INT_OR_AUTO,
    "width": FLOAT_OR_AUTO,
    "sample_block_size": POSITIVE_INT,
    "stages": STAGES,
    "device": STRING,
    "sigma": Kind('"real", "pooled" or a positive number', _check_sigma),
    "n_pcs": Kind("a positive integer", _check_positive_int),
    "n_jobs": INT,
    # train()'s hyperparameters default to None (the recipe's value): absent keys stay None
    "max_steps_stage1": POSITIVE_INT,
    "max_steps_stage2": POSITIVE_INT,
    "batch_size_stage1": POSITIVE_INT,
    "batch_size_stage2": POSITIVE_INT,
    "n_critic": POSITIVE_INT,
    "gp_lambda": FLOAT,
    "lr_stage1": POSITIVE_FLOAT,
    "lr_stage1_final": POSITIVE_FLOAT,
    "lr_generator_stage2": POSITIVE_FLOAT,
    "lr_generator_stage2_final": POSITIVE_FLOAT,
    "lr_critic_stage2": POSITIVE_FLOAT,
    "lr_critic_stage2_final": POSITIVE_FLOAT,
    "lr_labeler": POSITIVE_FLOAT,
    "weight_decay": FLOAT,
    "recipe": _choice("paper", "fast"),
    "max_time": POSITIVE_FLOAT,
    "ema_decay": FLOAT,
    "warm_start_critic": BOOL,
    "stage1_time_share": POSITIVE_FLOAT,
}

#: Keyword arguments that ``groundgan run`` sets itself.
_MODEL_EXCLUDED = {"self", "adata"}
_TRAIN_EXCLUDED = {"self", "checkpoint_dir", "validation_adata", "callbacks"}
_EVALUATE_EXCLUDED = {"real", "sim", "layer", "verbose", "control"}


def _kind_of_default(value: Any, annotation: Any = None) -> Kind | None:
    if isinstance(value, bool):
        return BOOL
    if isinstance(value, (int, float)) and "float" in str(annotation):
        return FLOAT
    if isinstance(value, int):
        return INT if value <= 0 else POSITIVE_INT
    if isinstance(value, float):
        return FLOAT
    if isinstance(value, str):
        return STRING
    if isinstance(value, (tuple, list)) and all(_is_int(x) for x in value):
        return INT_LIST
    return None


def _signature_options(func: Callable, excluded: set[str]) -> dict[str, Option]:
    """Options from a function's keyword arguments with JSON-representable defaults."""
    options = {}
    for name, param in inspect.signature(func).parameters.items():
        if name in excluded or param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
            continue
        if param.default is param.empty:
            continue
        kind = _KNOWN_KINDS.get(name) or _kind_of_default(param.default, param.annotation)
        if kind is None:
            continue
        default = list(param.default) if isinstance(param.default, tuple) else param.default
        options[name] = Option(kind, default, f"{func.__qualname__}({name}=...)")
    return options


def schema() -> dict[str, dict[str, Option]]:
    """Every section and its options (the model, train and evaluate keys from signatures)."""
    from .. import tl
    from ..model import GroundGAN

    evaluate = dict(EVALUATE_OWN)
    evaluate.update(_signature_options(tl.evaluate, _EVALUATE_EXCLUDED))
    return {
        "run": RUN,
        "data": DATA,
        "preprocess": PREPROCESS,
        "grn": GRN,
        "model": _signature_options(GroundGAN.__init__, _MODEL_EXCLUDED),
        "train": _signature_options(GroundGAN.train, _TRAIN_EXCLUDED),
        "sample": SAMPLE,
        "evaluate": evaluate,
        "perturb": PERTURB,
    }


SECTIONS = ("run", "data", "preprocess", "grn", "model", "train", "sample", "evaluate", "perturb")


# ----------------------------------------------------------------------------- reading


@dataclass
class Config:
    """A validated configuration: every section with its defaults filled in.

    Attributes
    ----------
    sections
        ``{section: {key: value}}`` for every section of the schema; a key that is not set
        and has no default is absent.
    given
        The keys the file (or an override) set explicitly, per section.
    source
        The configuration file.
    """

    sections: dict[str, dict[str, Any]]
    given: dict[str, set[str]] = field(default_factory=dict)
    source: Path | None = None

    def __getitem__(self, section: str) -> dict[str, Any]:
        return self.sections[section]

    @property
    def output(self) -> Path:
        """The run directory."""
        return Path(self.sections["run"]["output"])

    def step_section(self, step: str) -> dict[str, Any]:
        """What a step's result depends on, besides its upstream steps (hashed)."""
        s = self.sections
        own: dict[str, Any]
        if step == "preprocess":
            own = {"data": s["data"], "preprocess": s["preprocess"]}
        elif step == "grn":
            own = {"grn": s["grn"]}
        elif step == "train":
            own = {"model": s["model"], "train": _without(s["train"], _NO_EFFECT_TRAIN)}
        elif step == "evaluate":
            own = {"evaluate": _without(s["evaluate"], {"n_jobs"})}
        else:
            own = {step: s[step]}
        return _with_file_hashes(own)

    def to_json(self) -> str:
        """The resolved configuration as JSON (paths absolute, defaults filled in)."""
        return json.dumps(self.sections, indent=2, sort_keys=True, default=str)


#: train() keywords that do not change the trained model (left out of the step's hash).
_NO_EFFECT_TRAIN = {"progress_bar", "device", "checkpoint_every", "keep_checkpoints", "log_every"}


def _without(mapping: Mapping[str, Any], keys: Iterable[str]) -> dict[str, Any]:
    keys = set(keys)
    return {k: v for k, v in mapping.items() if k not in keys}


def _file_hash(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


_FILE_KEYS = {("data", "path"), ("grn", "path"), ("grn", "tfs")}


def _with_file_hashes(own: dict[str, Any]) -> dict[str, Any]:
    """Input files enter a step's hash by content, so an edited file reruns the step."""
    own = copy.deepcopy(own)
    for section, key in _FILE_KEYS:
        if section in own and own[section].get(key):
            path = Path(own[section][key])
            own[section][f"{key}_sha256"] = _file_hash(path) if path.is_file() else None
    return own


def step_hash(config: Config, step: str, upstream_hashes: Mapping[str, str]) -> str:
    """SHA-256 of a step's own settings and the hashes of the steps it reads from."""
    payload = {
        "step": step,
        "settings": config.step_section(step),
        "upstream": {name: upstream_hashes[name] for name in UPSTREAM[step]},
    }
    text = json.dumps(payload, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()


def parse_override(text: str) -> tuple[str, str, Any]:
    """``"section.key=value"`` -> ``(section, key, value)``; the value is read as TOML.

    A value that is not valid TOML is taken as a string, so ``--set data.path=cells.h5ad``
    needs no quotes.
    """
    if "=" not in text or "." not in text.split("=", 1)[0]:
        raise ConfigError(
            f"--set {text!r}: expected SECTION.KEY=VALUE, e.g. train.max_steps_stage1=1000"
        )
    target, raw = text.split("=", 1)
    section, key = (part.strip() for part in target.split(".", 1))
    try:
        value = tomllib.loads(f"value = {raw}")["value"]
    except tomllib.TOMLDecodeError:
        value = raw
    return section, key, value


def _read_toml(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise FileNotFoundError(f"configuration file not found: {path}")
    try:
        with open(path, "rb") as f:
            return tomllib.load(f)
    except tomllib.TOMLDecodeError as err:
        raise ConfigError(f"{path}: invalid TOML: {err}") from None


def _apply_overrides(raw: dict[str, Any], overrides: Iterable[str]) -> None:
    for text in overrides:
        section, key, value = parse_override(text)
        table = raw.setdefault(section, {})
        if not isinstance(table, dict):
            raise ConfigError(f"--set {text!r}: {section!r} is not a section")
        table[key] = value


def _check_section(name: str, values: Any, options: Mapping[str, Option]) -> dict[str, Any]:
    if not isinstance(values, dict):
        raise ConfigError(f"[{name}] must be a table (section), got {_describe(values)}")
    unknown = sorted(set(values) - set(options))
    if unknown:
        raise ConfigError(
            f"[{name}] unknown key{'s' if len(unknown) > 1 else ''} "
            f"{', '.join(repr(k) for k in unknown)}; known keys: {', '.join(sorted(options))}"
        )
    result = {}
    for key, option in options.items():
        if key in values:
            try:
                result[key] = option.kind.check(values[key])
            except _Mismatch:
                raise ConfigError(
                    f"[{name}] {key}: expected {option.kind.name}, got {_describe(values[key])}"
                ) from None
        elif option.default is not None:
            result[key] = copy.deepcopy(option.default)
    return result


def _check_sections(raw: dict[str, Any], options: Mapping[str, Mapping[str, Option]]) -> None:
    """Refuse unknown sections and keys written outside any section."""
    loose = sorted(k for k in raw if not isinstance(raw[k], dict) and k not in options)
    if loose:
        key = loose[0]
        homes = [f"[{s}]" for s in SECTIONS if key in options[s]]
        hint = f" (it belongs in {' or '.join(homes)})" if homes else ""
        raise ConfigError(f"key {key!r} outside any section{hint}; sections: " + _SECTION_LIST)
    unknown = sorted(set(raw) - set(options))
    if unknown:
        names = ", ".join(f"[{s}]" for s in unknown)
        plural = "s" if len(unknown) > 1 else ""
        raise ConfigError(f"unknown section{plural} {names}; sections: {_SECTION_LIST}")


_SECTION_LIST = ", ".join(f"[{s}]" for s in SECTIONS)


def _resolve(base: Path, value: str) -> str:
    path = Path(value).expanduser()
    return str(path if path.is_absolute() else (base / path).resolve())


def _check_files(sections: dict[str, dict[str, Any]], base: Path) -> None:
    """Resolve the run directory against the current directory, input files against ``base``,
    and require the input files to exist."""
    sections["run"]["output"] = _resolve(Path.cwd(), sections["run"]["output"])
    for section, key in sorted(_FILE_KEYS):
        value = sections[section].get(key)
        if value is None:
            continue
        path = _resolve(base, value)
        if not Path(path).is_file():
            raise FileNotFoundError(f"[{section}] {key}: file not found: {path}")
        sections[section][key] = path


def _check_consistency(sections: dict[str, dict[str, Any]]) -> None:
    data = sections["data"]
    if ("dataset" in data) == ("path" in data):
        raise ConfigError(
            "[data] give exactly one of 'dataset' (e.g. \"pbmc68k_reduced\") and 'path' "
            "(an .h5ad file)"
        )
    if ("obs_key" in data) != ("obs_values" in data):
        raise ConfigError("[data] obs_key and obs_values go together")
    if "dataset" in data and "layer" in data:
        raise ConfigError("[data] layer applies to 'path' only (data sets hold counts in X)")


def load_config(
    path: str | Path,
    overrides: Iterable[str] = (),
    output: str | Path | None = None,
) -> Config:
    """Read and validate a ``groundgan run`` configuration file.

    Parameters
    ----------
    path
        The TOML file.
    overrides
        ``"section.key=value"`` strings applied on top of the file (``--set``).
    output
        Run directory overriding ``[run] output`` (relative to the current directory).

    Returns
    -------
    Config
        The validated configuration, every default filled in, relative paths made absolute:
        input files relative to the file's folder, the run directory (``[run] output``,
        default ``groundgan_run``) relative to the current directory.

    Raises
    ------
    ConfigError
        Invalid TOML, an unknown section or key, a value of the wrong type, an inconsistent
        combination; the message names the section and the key.
    FileNotFoundError
        The file itself, ``[data] path``, ``[grn] path`` or ``[grn] tfs`` does not exist.
    """
    path = Path(path)
    raw = _read_toml(path)
    _apply_overrides(raw, overrides)
    return config_from_dict(raw, path.resolve().parent, output=output, source=path.resolve())


def config_from_dict(
    raw: Mapping[str, Any],
    base: Path,
    output: str | Path | None = None,
    source: Path | None = None,
) -> Config:
    """Validate a configuration given as ``{section: {key: value}}`` (as TOML would give it).

    Relative input paths are resolved against ``base``, the run directory against the
    current directory; see :func:`load_config`.
    """
    raw = copy.deepcopy(dict(raw))
    options = schema()
    _check_sections(raw, options)
    sections = {name: _check_section(name, raw.get(name, {}), options[name]) for name in SECTIONS}
    _check_consistency(sections)
    if output is not None:
        sections["run"]["output"] = str(Path(output).expanduser().resolve())
    _check_files(sections, Path(base))
    given = {name: set(raw.get(name, {})) for name in SECTIONS}
    return Config(sections=sections, given=given, source=source)
