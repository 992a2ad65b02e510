"""``groundgan run config.toml``: the whole pipeline, or single steps, from one TOML file.

Steps (in order): ``preprocess`` -> ``grn`` -> ``train`` -> ``sample`` -> ``evaluate``, and
``train`` -> ``perturb``. Each writes its outputs into the run directory and, once finished,
a marker ``steps/<step>.json`` holding a hash of the settings it depends on (its own section
and, through their hashes, those of the steps it reads from). A finished step whose hash still
matches is skipped on rerun; one whose settings changed is run again, and so, through the
hash chain, is everything downstream of it. An interrupted ``train`` resumes from the newest
checkpoint in ``checkpoints/``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .._keys import CONTROL_MODALITY
from .._locks import DirectoryLockedError, lock_directory
from .._validation import expressed_genes
from .._version import __version__
from ._config import STEPS, UPSTREAM, Config, load_config, step_hash

if TYPE_CHECKING:
    from anndata import AnnData
    from pandas import DataFrame

    from ..model import GroundGAN

__all__ = ["Pipeline", "RunError", "add_parser", "run_command"]

MARKER_DIR = "steps"
CHECKPOINT_DIR = "checkpoints"
CHECKPOINT_KEY = "checkpoints.json"
LOCK_FILE = ".lock"

#: Outputs of each step, relative to the run directory (all must exist for "done").
OUTPUTS = {
    "preprocess": ("train.h5ad", "test.h5ad"),
    "grn": ("grn.csv",),
    "train": ("model", "history.csv"),
    "sample": ("simulated.h5ad",),
    "evaluate": ("evaluation.csv",),
    "perturb": ("perturbation.h5mu", "perturbation_effect.csv"),
}


class RunError(ValueError):
    """The pipeline cannot go on (a missing upstream step, a locked run directory, ...)."""


# ----------------------------------------------------------------------------- files


def _atomic_path(path: Path) -> Path:
    return path.with_name(f".{path.stem}.{os.getpid()}.tmp{path.suffix}")


@contextlib.contextmanager
def atomic_output(path: Path) -> Iterator[Path]:
    """A temporary path next to ``path``, moved onto ``path`` when the block succeeds."""
    tmp = _atomic_path(path)
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def write_h5ad(adata: AnnData, path: Path) -> None:
    with atomic_output(path) as tmp:
        adata.write_h5ad(tmp)


def write_csv(table: DataFrame, path: Path, index: bool = True) -> None:
    with atomic_output(path) as tmp:
        table.to_csv(tmp, index=index)


def write_json(payload: dict, path: Path) -> None:
    with atomic_output(path) as tmp:
        tmp.write_text(json.dumps(payload, indent=2, sort_keys=True, default=str) + "\n")


@contextlib.contextmanager
def run_lock(run_dir: Path) -> Iterator[None]:
    """Hold an exclusive lock on the run directory (one ``groundgan run`` at a time)."""
    run_dir.mkdir(parents=True, exist_ok=True)
    try:
        handle = lock_directory(run_dir / LOCK_FILE)
    except DirectoryLockedError as err:
        raise RunError(
            f"another groundgan run is using {run_dir} (pid {err.holder}); wait for it or use "
            "another output directory"
        ) from None
    try:
        yield
    finally:
        handle.close()  # closing releases the lock


# ----------------------------------------------------------------------------- readers


def read_tf_list(path: Path) -> list[str]:
    """A TF list: a table with a ``Symbol`` column (AnimalTFDB), or one name per line."""
    import pandas as pd

    text = Path(path).read_text()
    header = text.splitlines()[0] if text else ""
    for sep in ("\t", ","):
        if "Symbol" in header.split(sep):
            table = pd.read_csv(path, sep=sep, dtype=str)
            names = table["Symbol"].dropna().str.strip()
            return sorted(set(names[names != ""]))
    names = (line.strip() for line in text.splitlines())
    return sorted({n for n in names if n and not n.startswith("#")})


def load_cells(data: dict[str, Any]) -> AnnData:
    """The cells of ``[data]``: a data set of :mod:`groundgan.datasets` or an .h5ad file."""
    import anndata

    from .. import datasets

    if "dataset" in data:
        adata = getattr(datasets, data["dataset"])()
    else:
        adata = anndata.read_h5ad(data["path"])
        layer = data.get("layer")
        if layer is not None:
            if layer not in adata.layers:
                raise RunError(
                    f"[data] layer {layer!r} not found in {data['path']} "
                    f"(layers: {sorted(adata.layers) or 'none'})"
                )
            adata.X = adata.layers[layer]
    if "obs_key" in data:
        key = data["obs_key"]
        if key not in adata.obs:
            raise RunError(f"[data] obs_key {key!r} is not a column of obs ({list(adata.obs)})")
        keep = adata.obs[key].astype(str).isin(data["obs_values"]).to_numpy()
        if not keep.any():
            raise RunError(f"[data] no cell has obs[{key!r}] in {data['obs_values']}")
        adata = adata[keep].copy()
    return adata


# ----------------------------------------------------------------------------- pipeline


@dataclass
class Pipeline:
    """The steps of one configuration in one run directory.

    Parameters
    ----------
    config
        A validated :class:`~groundgan.cli._config.Config`.
    log
        Called with each progress line.
    """

    config: Config
    log: Callable[[str], None] = print
    hashes: dict[str, str] = field(init=False)
    _start: float = field(init=False, default_factory=time.perf_counter)

    def __post_init__(self) -> None:
        self.hashes = {}
        for step in STEPS:
            self.hashes[step] = step_hash(self.config, step, self.hashes)

    # paths and markers ---------------------------------------------------------------------
    @property
    def run_dir(self) -> Path:
        return self.config.output

    def path(self, name: str) -> Path:
        return self.run_dir / name

    def marker(self, step: str) -> Path:
        return self.run_dir / MARKER_DIR / f"{step}.json"

    def enabled(self, step: str) -> bool:
        if step == "evaluate":
            return bool(self.config["evaluate"]["enabled"])
        if step == "perturb":
            return bool(self.config["perturb"]["perturbations"])
        return True

    def state(self, step: str) -> str:
        """``"done"``, ``"stale"``, ``"pending"`` or ``"off"``.

        ``"stale"``: finished, but with other settings than the configuration's, or from
        outputs of an earlier step that is not done with the configuration's settings.
        """
        if not self.enabled(step):
            return "off"
        marker = self.marker(step)
        if not marker.is_file():
            return "pending"
        try:
            recorded = json.loads(marker.read_text()).get("hash")
        except (OSError, ValueError):
            return "pending"
        if recorded != self.hashes[step]:
            return "stale"
        if not all(self.path(name).exists() for name in OUTPUTS[step]):
            return "pending"
        if any(self.state(upstream) != "done" for upstream in UPSTREAM[step]):
            return "stale"  # made from inputs that no longer match the configuration
        return "done"

    def _say(self, step: str, message: str) -> None:
        self.log(f"[{time.perf_counter() - self._start:7.1f} s] {step}: {message}")

    # checks --------------------------------------------------------------------------------
    def check(self) -> None:
        """What can be checked before any step: the ``[train] device`` and the ``[perturb]``
        TFs (:meth:`check_perturbations`). Raises a one-line ``ValueError``."""
        from .._devices import resolve_device

        resolve_device(self.config["train"].get("device", "auto"))
        self.check_perturbations()

    def check_perturbations(self) -> None:
        """Refuse ``[perturb]`` genes that are not TFs of the GRN, as soon as it is known.

        Checked against ``grn.csv`` once the ``grn`` step is done; before that, against the
        GRN file of ``[grn] path``, or against the TF list the GRN will be inferred with (a
        gene outside it cannot become a TF). :meth:`run` checks before its first step and
        again once ``grn`` has run, so a wrong TF stops the run before hours of training.

        Raises
        ------
        RunError
            One line naming the gene: not a TF of the GRN, a target gene, or not in the TF list.
        """
        if not self.enabled("perturb"):
            return
        genes = [gene for item in self.config["perturb"]["perturbations"] for gene in item]
        tfs, targets, where = self._perturbable()
        for gene in genes:
            if gene in tfs:
                continue
            if targets is None:
                raise RunError(
                    f"[perturb] perturbations: {gene!r} is not in {where}, so it cannot be a TF "
                    "of the inferred GRN; perturb a TF of that list"
                )
            from .._validation import format_names

            known = f"TFs: {format_names(sorted(tfs))}"
            if gene in targets:
                raise RunError(
                    f"[perturb] perturbations: {gene!r} is a target gene of {where}, not a TF; "
                    f"only TFs can be perturbed ({known})"
                )
            raise RunError(f"[perturb] perturbations: {gene!r} is not a TF of {where} ({known})")

    def _perturbable(self) -> tuple[set[str], set[str] | None, str]:
        """``(TFs, target genes or None, where they come from)`` for :meth:`check_perturbations`.

        ``None`` for the targets: the GRN is still to be inferred, the TFs are its TF list.
        """
        from .. import datasets, grn

        settings = self.config["grn"]
        if self.state("grn") == "done":
            table, where = grn.read(self.path("grn.csv")), f"the GRN {self.path('grn.csv')}"
        elif "path" in settings:
            table, where = grn.read(settings["path"]), f"the GRN {settings['path']} ([grn] path)"
        elif "tfs" in settings:
            return set(read_tf_list(Path(settings["tfs"]))), None, f"the TF list {settings['tfs']}"
        else:
            species = settings["species"]
            return set(datasets.tf_list(species)), None, f"the {species} AnimalTFDB TF list"
        tfs = set(table["tf"])
        return tfs, set(table["target"]) - tfs, where

    # running -------------------------------------------------------------------------------
    def run(self, steps: Sequence[str] | None = None, force: bool = False) -> dict[str, str]:
        """Run ``steps`` (default: all) in pipeline order; returns ``{step: what happened}``.

        A step not asked for must be done already when a step asked for reads its outputs.
        The device and the ``[perturb]`` TFs are checked before the first step (:meth:`check`),
        the TFs again once ``grn`` has run.
        """
        selected = list(STEPS) if not steps else [s for s in STEPS if s in set(steps)]
        self.check()
        self.run_dir.mkdir(parents=True, exist_ok=True)
        outcome: dict[str, str] = {}
        with run_lock(self.run_dir):
            write_json(json.loads(self.config.to_json()), self.path("config.json"))
            for step in selected:
                outcome[step] = self._run_step(step, selected, force)
                if step == "grn":
                    self.check_perturbations()  # the GRN is known now: before any training
        return outcome

    def _run_step(self, step: str, selected: Sequence[str], force: bool) -> str:
        state = self.state(step)
        if state == "off":
            self._say(step, "off in the configuration, skipped")
            return "off"
        if state == "done" and not force:
            self._say(step, "done already (same settings), skipped")
            return "skipped"
        self._check_upstream(step, selected)
        self._say(step, "settings changed, running again" if state == "stale" else "running")
        started = time.perf_counter()
        self.marker(step).unlink(missing_ok=True)
        outputs = getattr(self, f"_step_{step}")()
        seconds = time.perf_counter() - started
        self.marker(step).parent.mkdir(exist_ok=True)
        write_json(
            {
                "step": step,
                "hash": self.hashes[step],
                "settings": self.config.step_section(step),
                "outputs": list(outputs),
                "seconds": round(seconds, 3),
                "finished": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                "groundgan": __version__,
            },
            self.marker(step),
        )
        self._say(step, f"done in {seconds:.1f} s: {', '.join(outputs)}")
        return "ran"

    def _check_upstream(self, step: str, selected: Sequence[str]) -> None:
        for upstream in UPSTREAM[step]:
            if upstream in selected:
                continue
            state = self.state(upstream)
            if state != "done":
                why = "has not run" if state == "pending" else "ran with other settings"
                raise RunError(
                    f"step {step!r} needs the outputs of {upstream!r}, which {why} in "
                    f"{self.run_dir}: run it first (groundgan run CONFIG --step {upstream})"
                )

    # the steps -----------------------------------------------------------------------------
    def _step_preprocess(self) -> list[str]:
        from .. import pp

        settings = self.config["preprocess"]
        adata = load_cells(self.config["data"])
        n_cells_in = adata.n_obs
        pp.preprocess(
            adata,
            **{k: settings[k] for k in ("n_top_genes", "library_size", "min_genes", "min_cells")},
        )
        split = pp.train_test_split(
            adata,
            n_test=settings["n_test"],
            n_validation=settings["n_validation"],
            seed=settings["seed"],
        )
        names = (
            ["train.h5ad", "validation.h5ad", "test.h5ad"]
            if len(split) == 3
            else ["train.h5ad", "test.h5ad"]
        )
        self.path("validation.h5ad").unlink(missing_ok=True)
        for name, part in zip(names, split, strict=True):
            write_h5ad(part, self.path(name))
        sizes = " / ".join(
            f"{p.n_obs} {n.split('.')[0]}" for n, p in zip(names, split, strict=True)
        )
        self._say("preprocess", f"{n_cells_in} cells -> {sizes} cells x {adata.n_vars} genes")
        return names

    def _read(self, name: str) -> AnnData:
        import anndata

        return anndata.read_h5ad(self.path(name))

    def _step_grn(self) -> list[str]:
        from .. import datasets, grn

        settings = self.config["grn"]
        train = self._read("train.h5ad")
        if "path" in settings:
            table = grn.validate(grn.read(settings["path"]), train)
            self._say("grn", f"imposing the GRN of {settings['path']} (inference settings unused)")
        else:
            if "tfs" in settings:
                tfs = read_tf_list(Path(settings["tfs"]))
            else:
                tfs = datasets.tf_list(settings["species"])
            expressed = expressed_genes(train.X)
            if not expressed.all():
                self._say(
                    "grn", f"{(~expressed).sum()} genes are zero in every training cell: left out"
                )
                train = train[:, expressed]
            table = grn.infer(
                train,
                tfs=tfs,
                k=settings["k"],
                method=settings["method"],
                strategy=settings["strategy"],
                tf_targets=settings["tf_targets"],
                seed=settings["seed"],
                progress=sys.stderr.isatty(),
            )
        grn.write(table, self.path("grn.csv"))
        levels = grn.levels(table)
        depth = f", {levels.max()} levels below the root TFs" if levels.max() > 1 else ""
        self._say(
            "grn",
            f"{table['tf'].nunique()} TFs -> {table['target'].nunique()} targets, "
            f"{len(table):,} edges{depth}",
        )
        return ["grn.csv"]

    def _model_cells(self, name: str) -> AnnData:
        from .. import grn

        return grn.subset(self._read(name), grn.read(self.path("grn.csv")))

    def _checkpoint_key(self) -> str:
        import hashlib

        from ..model._base import FREE_PARAMS

        model = {k: v for k, v in self.config["model"].items() if k not in FREE_PARAMS}
        text = json.dumps({"grn": self.hashes["grn"], "model": model}, sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()

    def _prepare_checkpoints(self) -> Path:
        """The checkpoint directory, emptied when it belongs to another model or GRN."""
        directory = self.path(CHECKPOINT_DIR)
        key_file = self.run_dir / MARKER_DIR / CHECKPOINT_KEY
        key = self._checkpoint_key()
        recorded = None
        if key_file.is_file():
            with contextlib.suppress(OSError, ValueError):
                recorded = json.loads(key_file.read_text()).get("key")
        if directory.exists() and recorded != key:
            self._say("train", f"{CHECKPOINT_DIR}/ holds another model or GRN: removing it")
            shutil.rmtree(directory)
        elif directory.exists() and any(directory.glob("checkpoint-*.pt")):
            self._say("train", f"resuming from the newest checkpoint in {CHECKPOINT_DIR}/")
        key_file.parent.mkdir(exist_ok=True)
        write_json({"key": key}, key_file)
        return directory

    def _step_train(self) -> list[str]:
        from ..model import GroundGAN

        cells = self._model_cells("train.h5ad")
        validation = None
        if self.path("validation.h5ad").exists():
            validation = self._model_cells("validation.h5ad")
        table = _read_grn(self.path("grn.csv"))
        GroundGAN.setup_anndata(cells, grn=table)
        model = GroundGAN(cells, **_listify(self.config["model"]))
        self.log(repr(model))
        checkpoints = self._prepare_checkpoints()
        model.train(
            **_listify(self.config["train"]),
            checkpoint_dir=checkpoints,
            validation_adata=validation,
        )
        model.save(self.path("model"), overwrite=True)
        outputs = ["model", "history.csv"]
        write_csv(model.history_, self.path("history.csv"), index=False)
        if len(model.validation_history_):
            write_csv(model.validation_history_, self.path("validation_history.csv"), index=False)
            outputs.append("validation_history.csv")
        steps = model.steps_
        self._say("train", f"trained {steps['stage1']:,} + {steps['stage2']:,} steps")
        return outputs

    def _load_model(self, step: str) -> GroundGAN:
        """The trained model; a model whose stage 2 did not train (``[train] stages = [1]``)
        is used as the configuration asks, with a note in the log."""
        from .._devices import resolve_device
        from ..model import GroundGAN

        device = resolve_device(self.config["train"].get("device", "auto"))
        model = GroundGAN.load(self.path("model"), device=str(device))
        if not model.is_trained_:
            self._say(
                step,
                "the model's stage 2 has not trained ([train] stages): the cells come from "
                "untrained target generators",
            )
        return model

    def _step_sample(self) -> list[str]:
        settings = self.config["sample"]
        model = self._load_model("sample")
        out = self.path("simulated.h5ad")
        out.unlink(missing_ok=True)
        chunk_size = settings.get("chunk_size")
        if chunk_size:
            sim = model.sample(
                settings["n_cells"],
                seed=settings["seed"],
                path=out,
                chunk_size=chunk_size,
                allow_untrained=True,  # as configured; noted by _load_model
            )
            sim.file.close()
        else:
            sim = model.sample(settings["n_cells"], seed=settings["seed"], allow_untrained=True)
            write_h5ad(sim, out)
        self._say("sample", f"{settings['n_cells']:,} cells x {model.module.n_genes} genes")
        return ["simulated.h5ad"]

    def _step_evaluate(self) -> list[str]:
        import anndata

        from .. import pl, tl

        settings = dict(self.config["evaluate"])
        settings.pop("enabled")
        n_cells, plot = settings.pop("n_cells", None), settings.pop("plot")
        test = self._model_cells("test.h5ad")
        backed = anndata.read_h5ad(self.path("simulated.h5ad"), backed="r")
        try:
            n = backed.n_obs if n_cells is None else min(n_cells, backed.n_obs)
            sim = backed[:n].to_memory()
        finally:
            backed.file.close()
        table = tl.evaluate(test, {"GroundGAN": sim}, **settings)
        write_csv(table, self.path("evaluation.csv"))
        self.log(table.to_string(float_format=lambda v: f"{v:.4g}"))
        outputs = ["evaluation.csv"]
        if plot:
            _plot_embedding(pl, test, sim, settings, self.path("embedding.png"))
            outputs.append("embedding.png")
        return outputs

    def _step_perturb(self) -> list[str]:
        from .. import tl

        settings = self.config["perturb"]
        model = self._load_model("perturb")
        mdata = model.perturb(
            settings["perturbations"],
            n_cells=settings["n_cells"],
            seed=settings["seed"],
            mode=settings["mode"],
            allow_untrained=True,  # as configured; noted by _load_model
        )
        with atomic_output(self.path("perturbation.h5mu")) as tmp:
            mdata.write(str(tmp))
        effect = tl.perturbation_effect(mdata)
        write_csv(effect, self.path("perturbation_effect.csv"), index=False)
        keys = [k for k in mdata.mod if k != CONTROL_MODALITY]
        self._say("perturb", f"{len(keys)} perturbation(s): {', '.join(keys)}")
        return ["perturbation.h5mu", "perturbation_effect.csv"]


def _read_grn(path: Path) -> DataFrame:
    from .. import grn

    return grn.read(path)


def _listify(kwargs: dict[str, Any]) -> dict[str, Any]:
    """Configuration values as the model expects them (arrays stay lists, tuples for stages)."""
    return {k: tuple(v) if k == "stages" else v for k, v in kwargs.items()}


def _plot_embedding(pl, test, sim, settings: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    kwargs = {k: settings[k] for k in ("seed", "n_pcs", "tsne_perplexity") if k in settings}
    ax = pl.embedding(test, {"GroundGAN": sim}, show=False, **kwargs)
    with atomic_output(path) as tmp:
        ax.figure.savefig(tmp, format="png", dpi=120, bbox_inches="tight")
    plt.close(ax.figure)


# ----------------------------------------------------------------------------- command line


def add_parser(commands) -> None:
    """Register ``groundgan run``."""
    p = commands.add_parser(
        "run",
        help="run the pipeline (or single steps) from a TOML configuration",
        description=(
            "Run the GRouNdGAN pipeline from one TOML configuration file:\n"
            "preprocess -> grn -> train -> sample -> evaluate, and train -> perturb.\n\n"
            "Outputs go to the run directory ([run] output). A finished step is skipped when\n"
            "run again with the same settings; a step whose settings changed runs again, and\n"
            "so do the steps after it; an interrupted training resumes from its newest\n"
            "checkpoint."
        ),
        epilog=(
            "examples:\n"
            "  groundgan run config.toml                   # every step\n"
            "  groundgan run config.toml --step train      # one step (needs grn done)\n"
            "  groundgan run config.toml --set train.max_steps_stage2=2000 --set train.device=cuda\n"
            "  groundgan run config.toml --check           # validate and show the steps' state\n"
            "The configuration schema: see the documentation page 'Command line'."
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("config", type=Path, help="the TOML configuration file")
    p.add_argument(
        "--step",
        action="append",
        choices=STEPS,
        metavar="STEP",
        help=f"run only this step (repeatable): {', '.join(STEPS)}",
    )
    p.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="SECTION.KEY=VALUE",
        help="override a configuration value (repeatable; VALUE is read as TOML)",
    )
    p.add_argument("--output", type=Path, help="run directory (overrides [run] output)")
    p.add_argument(
        "--force", action="store_true", help="run the selected steps even if they are done"
    )
    p.add_argument(
        "--check",
        action="store_true",
        help="validate the configuration, print each step's state and exit",
    )
    p.set_defaults(func=run_command)


def _print_states(pipeline: Pipeline) -> None:
    print(f"run directory: {pipeline.run_dir}")
    for step in STEPS:
        print(f"  {step:<11} {pipeline.state(step)}")


def run_command(args: argparse.Namespace) -> int:
    """``groundgan run``: returns the exit code."""
    config = load_config(args.config, overrides=args.overrides, output=args.output)
    threads = config["run"].get("threads", 0)
    if threads:
        import torch

        torch.set_num_threads(threads)
    pipeline = Pipeline(config)
    if args.check:  # the device is not checked: a GPU job may be checked on a machine without one
        pipeline.check_perturbations()
        _print_states(pipeline)
        return 0
    pipeline.run(args.step, force=args.force)  # errors: one line, from groundgan.cli.main
    return 0
