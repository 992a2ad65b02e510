"""The ``groundgan`` command line: ``run`` (configuration, steps, reruns, resume), ``demo``."""

from __future__ import annotations

import contextlib
import inspect
import json
import os
import shutil
from pathlib import Path

import pytest
import tomllib
import torch

import groundgan as gg
from groundgan.cli import build_parser, main
from groundgan.cli._config import STEPS, ConfigError, load_config, parse_override, schema

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "config.toml"

#: Settings that make the example configuration run in seconds (everything else as shipped).
TINY = {
    "run": {"threads": 1},
    "preprocess": {"n_top_genes": 120, "n_test": 100},
    "grn": {"k": 3},
    "model": {
        "latent_dim": 8,
        "controller_hidden": [16, 16],
        "critic_hidden": [16, 16],
        "labeler_hidden": [16],
        "sample_block_size": 64,
    },
    "train": {
        "max_steps_stage1": 5,
        "max_steps_stage2": 5,
        "batch_size_stage1": 32,
        "batch_size_stage2": 32,
        "checkpoint_every": 3,
        "log_every": 1,
        "progress_bar": False,
        "device": "cpu",
    },
    "sample": {"n_cells": 100},
    "evaluate": {
        "n_estimators": 10,
        "n_pcs": 10,
        "perplexity": 5,
        "n_neighbors": 15,
        "tsne_perplexity": 5,
    },
    "perturb": {"perturbations": [{"IRF8": 0.0}, {"IRF8": 0.0, "SPIB": 0.0}], "n_cells": 64},
}


# ----------------------------------------------------------------------------- helpers


def _toml_value(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k} = {_toml_value(v)}" for k, v in value.items()) + "}"
    raise TypeError(type(value))


def toml_dumps(config: dict) -> str:
    """A TOML document of sections of plain values (enough for these configurations)."""
    lines = []
    for section, values in config.items():
        lines.append(f"[{section}]")
        lines += [f"{key} = {_toml_value(value)}" for key, value in values.items()]
        lines.append("")
    return "\n".join(lines)


def tiny_config(folder: Path, **changes) -> Path:
    """The example configuration with :data:`TINY` settings (and ``changes``) in ``folder``.

    Its run directory, ``run``, is relative to the current directory: run it from ``folder``.
    """
    config = tomllib.loads(EXAMPLE.read_text())
    for section, values in {**TINY, "run": {**TINY["run"], "output": "run"}}.items():
        config.setdefault(section, {}).update(values)
    for section, values in changes.items():
        config.setdefault(section, {}).update(values)
    path = folder / "config.toml"
    path.write_text(toml_dumps(config))
    return path


def run_cli(*args: str) -> int:
    return main(["run", *map(str, args)])


def one_line_error(capsys, command: str = "run") -> str:
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0, err
    assert err.startswith(f"groundgan {command}: error: "), err
    return err


@pytest.fixture(autouse=True)
def _in_tmp_path(tmp_path, monkeypatch):
    """Every test runs in its own folder: run directories are relative to the current one."""
    monkeypatch.chdir(tmp_path)


@contextlib.contextmanager
def working_directory(folder: Path):
    """Run the block in ``folder`` (run directories are relative to the current directory)."""
    before = Path.cwd()
    os.chdir(folder)
    try:
        yield
    finally:
        os.chdir(before)


@pytest.fixture(scope="session")
def finished_run(tmp_path_factory):
    """A complete run of the tiny example configuration, made once for all test workers."""
    from filelock import FileLock

    root = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        root = root.parent  # shared by the xdist workers
    folder = root / "groundgan_cli_run"
    with FileLock(str(root / "groundgan_cli_run.lock")):
        if not (folder / "run" / "steps" / "perturb.json").exists():
            shutil.rmtree(folder, ignore_errors=True)
            folder.mkdir()
            config = tiny_config(folder)
            with working_directory(folder):
                assert run_cli(config) == 0
    return folder


@pytest.fixture
def run_copy(finished_run, tmp_path, monkeypatch):
    """A private copy of :func:`finished_run` (configuration and run directory), as the
    current directory."""
    folder = tmp_path / "copy"
    shutil.copytree(finished_run, folder, ignore=shutil.ignore_patterns(".lock"))
    monkeypatch.chdir(folder)
    return folder


def states(capsys, config: Path) -> dict[str, str]:
    capsys.readouterr()
    assert run_cli(config, "--check") == 0
    lines = capsys.readouterr().out.splitlines()[1:]
    return dict(line.split() for line in lines)


# ----------------------------------------------------------------------------- top level


def test_version_and_help(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["--version"])
    assert exit_info.value.code == 0
    assert capsys.readouterr().out.strip() == f"groundgan {gg.__version__}"

    help_text = build_parser().format_help()
    assert "run" in help_text and "demo" in help_text
    with pytest.raises(SystemExit):
        main(["run", "--help"])
    out = capsys.readouterr().out
    for word in ("--step", "--set", "--check", "--force", "--output", *STEPS):
        assert word in out


def test_no_command_prints_help(capsys):
    assert main([]) == 2
    assert "usage: groundgan" in capsys.readouterr().out


# ----------------------------------------------------------------------------- configuration


def test_example_config_is_valid():
    config = load_config(EXAMPLE)
    assert config["data"]["dataset"] == "pbmc68k_reduced"
    assert config.output == Path.cwd() / "groundgan_run"  # relative to where it runs
    assert config["train"]["max_steps_stage1"] == 1000
    assert config["model"]["controller_hidden"] == [128, 256, 512]
    assert config["perturb"]["perturbations"] == [{"SPI1": 0.0}]
    # defaults filled in from the model's signature; hyperparameters not set come from the recipe
    assert config["train"]["recipe"] == "paper"
    assert "n_critic" not in config["train"]
    assert config["model"]["calibrate_targets"] is True


def test_schema_follows_the_model_api():
    options = schema()
    init = set(inspect.signature(gg.GroundGAN.__init__).parameters) - {"self", "adata"}
    assert set(options["model"]) == init
    train = set(inspect.signature(gg.GroundGAN.train).parameters)
    excluded = {"self", "checkpoint_dir", "validation_adata", "callbacks"}
    assert set(options["train"]) == train - excluded
    assert {"n_estimators", "n_pcs", "seed", "enabled", "plot"} <= set(options["evaluate"])


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[train]\nmax_step = 10\n", "[train] unknown key 'max_step'; known keys: "),
        ("[trian]\nmax_steps_stage1 = 10\n", "unknown section [trian]; sections: [run]"),
        (
            '[train]\nmax_steps_stage1 = "many"\n',
            "[train] max_steps_stage1: expected a positive integer, got 'many' (string)",
        ),
        (
            "[train]\nmax_steps_stage1 = -3\n",
            "[train] max_steps_stage1: expected a positive integer, got -3",
        ),
        (
            "[model]\ndepth = 2.5\n",
            '[model] depth: expected a positive integer or "auto", got 2.5 (float)',
        ),
        (
            "[model]\ncontroller_hidden = 256\n",
            "[model] controller_hidden: expected an array of positive integers",
        ),
        (
            "[train]\nprogress_bar = 1\n",
            "[train] progress_bar: expected true or false, got 1 (integer)",
        ),
        (
            '[grn]\nstrategy = "best"\n',
            "[grn] strategy: expected one of 'top', 'positive_control', 'negative_control'",
        ),
        ('[grn]\ntf_targets = "yes"\n', "[grn] tf_targets: expected true or false, got 'yes'"),
        ("[grn]\ntf_targets = 1\n", "[grn] tf_targets: expected true or false, got 1 (integer)"),
        ('[data]\ndataset = "pbmc"\n', "[data] dataset: expected one of 'pbmc68k_reduced'"),
        ('[data]\ndataset = "paul15"\npath = "cells.h5ad"\n', "give exactly one of 'dataset'"),
        (
            '[perturb]\nperturbations = [{SPI1 = "off"}]\n',
            "[perturb] perturbations: expected an array of tables",
        ),
        ("output = 3\n", "key 'output' outside any section (it belongs in [run]); sections: "),
        ("[train]\n[[train.x]]\n", "[train] unknown key 'x'"),
        ("train = 3\n", "[train] must be a table (section), got 3 (integer)"),
        ("[train\n", "invalid TOML"),
    ],
)
def test_bad_config_is_a_one_line_error(tmp_path, capsys, text, message):
    config = tmp_path / "config.toml"
    config.write_text(text + '[data]\ndataset = "pbmc68k_reduced"\n' * ("[data]" not in text))
    assert run_cli(config, "--check") == 2
    assert message in one_line_error(capsys)
    assert not (tmp_path / "groundgan_run").exists()


def test_missing_files_are_named(tmp_path, capsys):
    assert run_cli(tmp_path / "nope.toml") == 2
    assert "configuration file not found" in one_line_error(capsys)

    config = tmp_path / "config.toml"
    config.write_text('[data]\npath = "cells.h5ad"\n')
    assert run_cli(config) == 2
    err = one_line_error(capsys)
    assert "[data] path: file not found" in err and str(tmp_path / "cells.h5ad") in err

    config.write_text('[data]\ndataset = "pbmc68k_reduced"\n[grn]\ntfs = "tfs.txt"\n')
    assert run_cli(config) == 2
    assert "[grn] tfs: file not found" in one_line_error(capsys)


def test_overrides():
    assert parse_override("train.max_steps_stage1=10") == ("train", "max_steps_stage1", 10)
    assert parse_override("data.path=cells.h5ad") == ("data", "path", "cells.h5ad")
    assert parse_override("model.critic_hidden=[8, 4]") == ("model", "critic_hidden", [8, 4])
    assert parse_override("perturb.perturbations=[{SPI1 = 0}]")[2] == [{"SPI1": 0}]
    with pytest.raises(ConfigError, match="SECTION.KEY=VALUE"):
        parse_override("max_steps=3")
    config = load_config(EXAMPLE, overrides=["train.max_steps_stage2=7"], output="elsewhere")
    assert config["train"]["max_steps_stage2"] == 7
    assert config.output == Path("elsewhere").resolve()


def test_run_directory_is_relative_to_the_current_directory(tmp_path, monkeypatch):
    """Outputs go where the run is started, input files are found next to the configuration."""
    shared, elsewhere = tmp_path / "shared", tmp_path / "work"
    shared.mkdir()
    elsewhere.mkdir()
    (shared / "tfs.txt").write_text("SPI1\nIRF8\n")
    config = tiny_config(shared, grn={"tfs": "tfs.txt"})
    monkeypatch.chdir(elsewhere)
    loaded = load_config(config)
    assert loaded.output == elsewhere / "run"
    assert loaded["grn"]["tfs"] == str(shared / "tfs.txt")
    assert load_config(config, overrides=[f"run.output={tmp_path / 'abs'}"]).output == (
        tmp_path / "abs"
    )
    assert load_config(EXAMPLE).output == elsewhere / "groundgan_run"


def test_step_needs_its_upstream_steps(tmp_path, capsys):
    config = tiny_config(tmp_path)
    assert run_cli(config, "--step", "train") == 2
    err = one_line_error(capsys)
    assert "step 'train' needs the outputs of 'grn'" in err and "--step grn" in err


# ----------------------------------------------------------------------------- the pipeline


def test_example_pipeline_end_to_end(finished_run):
    import anndata
    import pandas as pd

    run = finished_run / "run"
    for name in (
        "train.h5ad",
        "test.h5ad",
        "grn.csv",
        "model",
        "history.csv",
        "simulated.h5ad",
        "evaluation.csv",
        "embedding.png",
        "perturbation.h5mu",
        "perturbation_effect.csv",
        "config.json",
    ):
        assert (run / name).exists(), name
    for step in STEPS:
        marker = json.loads((run / "steps" / f"{step}.json").read_text())
        assert marker["step"] == step and len(marker["hash"]) == 64

    grn = gg.grn.read(run / "grn.csv")
    assert grn.groupby("target").size().max() <= 3
    model = gg.GroundGAN.load(run / "model")
    assert model.steps_ == {"stage1": 5, "stage2": 5}
    sim = anndata.read_h5ad(run / "simulated.h5ad")
    assert sim.n_obs == 100 and set(sim.var_names) == set(grn.tf) | set(grn.target)
    table = pd.read_csv(run / "evaluation.csv", index_col=0)
    assert list(table.index) == ["GroundGAN", "control"]
    assert {"cosine", "euclidean", "mmd", "rf_auroc", "milisi"} <= set(table.columns)
    effect = pd.read_csv(run / "perturbation_effect.csv")
    assert set(effect["perturbation"]) == {"IRF8=0", "IRF8=0,SPIB=0"}
    unchanged = effect[~effect["is_target"] & ~effect["is_perturbed_tf"]]
    assert (unchanged["fraction_changed"] == 0).all()


def test_rerun_skips_finished_steps(run_copy, capsys):
    markers = {p.name: p.stat().st_mtime_ns for p in (run_copy / "run" / "steps").iterdir()}
    capsys.readouterr()
    assert run_cli(run_copy / "config.toml") == 0
    out = capsys.readouterr().out
    assert out.count("done already (same settings), skipped") == len(STEPS)
    assert markers == {p.name: p.stat().st_mtime_ns for p in (run_copy / "run" / "steps").iterdir()}


def test_changed_settings_rerun_the_step_and_invalidate_downstream(run_copy, capsys):
    config = run_copy / "config.toml"
    assert run_cli(config, "--step", "sample", "--set", "sample.n_cells=50") == 0
    import anndata

    assert anndata.read_h5ad(run_copy / "run" / "simulated.h5ad").n_obs == 50
    after = states(capsys, config)  # the file still says 100 cells: sample is stale again
    assert after == {
        "preprocess": "done",
        "grn": "done",
        "train": "done",
        "sample": "stale",
        "evaluate": "stale",
        "perturb": "done",
    }
    capsys.readouterr()
    assert run_cli(config, "--check", "--set", "sample.n_cells=50") == 0
    out = capsys.readouterr().out
    assert "sample      done" in out and "evaluate    stale" in out

    # evaluate alone refuses to read a sample made with other settings
    assert run_cli(config, "--step", "evaluate") == 2
    assert "needs the outputs of 'sample', which ran with other settings" in one_line_error(capsys)

    # a new GRN setting invalidates everything after preprocess
    capsys.readouterr()
    assert run_cli(config, "--check", "--set", "grn.k=2") == 0
    out = capsys.readouterr().out
    assert "preprocess  done" in out and "grn         stale" in out and "train       stale" in out


def test_interrupted_training_resumes_from_checkpoints(run_copy, capsys):
    import pandas as pd

    run = run_copy / "run"
    config = run_copy / "config.toml"
    before = gg.GroundGAN.load(run / "model")
    # a run killed after its last checkpoint, before the step finished: no marker
    (run / "steps" / "train.json").unlink()
    shutil.rmtree(run / "model")
    capsys.readouterr()
    assert run_cli(config, "--step", "train") == 0
    out = capsys.readouterr().out
    assert "resuming from the newest checkpoint" in out
    resumed = gg.GroundGAN.load(run / "model")
    assert resumed.steps_ == before.steps_
    import torch

    for (name, a), b in zip(
        before.module.state_dict().items(), resumed.module.state_dict().values(), strict=True
    ):
        assert torch.equal(a, b), name

    # more steps: training goes on from step 5 of stage 2, not from zero
    assert run_cli(config, "--step", "train", "--set", "train.max_steps_stage2=8") == 0
    assert gg.GroundGAN.load(run / "model").steps_ == {"stage1": 5, "stage2": 8}
    history = pd.read_csv(run / "history.csv")
    # the resumed losses continue the checkpointed ones: each stage-2 step is logged once
    assert list(history.loc[history["stage"] == "stage2", "step"]) == list(range(1, 9))


def test_other_model_discards_old_checkpoints(run_copy, capsys):
    config = run_copy / "config.toml"
    capsys.readouterr()
    assert run_cli(config, "--step", "train", "--set", "model.latent_dim=4") == 0
    out = capsys.readouterr().out
    assert "holds another model or GRN: removing it" in out
    assert gg.GroundGAN.load(run_copy / "run" / "model").init_params_["latent_dim"] == 4


def test_run_directory_is_locked(run_copy, capsys):
    import fcntl

    run = run_copy / "run"
    with open(run / ".lock", "w") as handle:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
        handle.write("12345")
        handle.flush()
        assert run_cli(run_copy / "config.toml") == 2
    assert "another groundgan run is using" in one_line_error(capsys)


# ----------------------------------------------------------------------------- [grn] tf_targets


def test_grn_tf_targets_infers_a_cascade_and_its_absence_a_bipartite_grn(tmp_path, capsys):
    """``tf_targets = true``: some TF regulates another TF (an acyclic GRN of more than two
    levels). Switching it off makes the grn step stale, and its rerun writes a bipartite GRN.
    Pearson importances keep it fast; the acyclic top-k rule is the same for every method."""
    config = tiny_config(tmp_path, grn={"tf_targets": True, "method": "pearson"})
    capsys.readouterr()
    assert run_cli(config, "--step", "preprocess", "--step", "grn") == 0
    assert "levels below the root TFs" in capsys.readouterr().out
    cascade = gg.grn.read(tmp_path / "run" / "grn.csv")
    assert cascade["target"].isin(set(cascade["tf"])).any()  # a TF -> TF edge
    assert gg.grn.levels(cascade).max() >= 2
    assert cascade.groupby("target").size().max() <= 3
    marker = json.loads((tmp_path / "run" / "steps" / "grn.json").read_text())
    assert marker["settings"]["grn"]["tf_targets"] is True

    off = "grn.tf_targets=false"
    assert states(capsys, config)["grn"] == "done"
    capsys.readouterr()
    assert run_cli(config, "--check", "--set", off) == 0
    assert "grn         stale" in capsys.readouterr().out
    assert run_cli(config, "--step", "grn", "--set", off) == 0
    assert "levels below the root TFs" not in capsys.readouterr().out
    bipartite = gg.grn.read(tmp_path / "run" / "grn.csv")
    assert not set(bipartite["tf"]) & set(bipartite["target"])
    assert gg.grn.levels(bipartite).max() == 1


# ----------------------------------------------------------------------------- [perturb] TFs


def _perturb(gene: str) -> str:
    return f"perturb.perturbations=[{{{gene} = 0.0}}]"


def test_perturb_tfs_are_checked_against_the_tf_list_before_any_step(tmp_path, capsys):
    config = tiny_config(tmp_path, run={"output": str(tmp_path / "run")})
    assert run_cli(config, "--check", "--set", _perturb("NOTATF")) == 2
    err = one_line_error(capsys)
    assert "[perturb] perturbations: 'NOTATF' is not in the human AnimalTFDB TF list" in err
    assert run_cli(config, "--set", _perturb("NOTATF")) == 2
    assert "'NOTATF'" in one_line_error(capsys)
    assert not (tmp_path / "run").exists()  # refused before anything was written
    assert run_cli(config, "--check", "--set", "perturb.perturbations=[{SPI1 = -1.0}]") == 2
    assert "values >= 0" in one_line_error(capsys)


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a torch without CUDA")
def test_cuda_without_cuda_is_refused_before_any_step(tmp_path, capsys):
    config = tiny_config(tmp_path)
    assert run_cli(config, "--check", "--set", "train.device=cuda") == 0  # e.g. on a login node
    assert run_cli(config, "--set", "train.device=cuda") == 2
    assert "install a CUDA build of torch" in one_line_error(capsys)
    assert main(["demo", "--out", str(tmp_path / "demo"), "--device", "cuda"]) == 2
    assert "device='cpu' or 'auto'" in one_line_error(capsys, "demo")
    assert not (tmp_path / "run").exists() and not (tmp_path / "demo").exists()


def test_perturb_tfs_are_checked_against_the_grn(run_copy, capsys):
    config = run_copy / "config.toml"
    grn = gg.grn.read(run_copy / "run" / "grn.csv")
    target = sorted(set(grn["target"]))[0]
    outside = next(tf for tf in gg.datasets.tf_list("human") if tf not in set(grn["tf"]))
    assert run_cli(config, "--check", "--set", _perturb(target)) == 2
    err = one_line_error(capsys)
    assert f"'{target}' is a target gene of the GRN" in err and "only TFs can be perturbed" in err
    assert run_cli(config, "--check", "--set", _perturb(outside)) == 2
    assert f"'{outside}' is not a TF of the GRN" in one_line_error(capsys)
    markers = sorted((run_copy / "run" / "steps").iterdir())
    assert run_cli(config, "--set", _perturb(outside)) == 2
    assert f"'{outside}'" in one_line_error(capsys)
    assert sorted((run_copy / "run" / "steps").iterdir()) == markers  # nothing ran


def test_perturb_tfs_are_checked_once_the_grn_is_inferred(tmp_path, capsys, pbmc_counts):
    """A TF of the list that the inferred GRN lacks stops the run after grn, before train."""
    absent = next(g for g in gg.datasets.tf_list("human") if g not in set(pbmc_counts.var_names))
    config = tiny_config(tmp_path, run={"output": str(tmp_path / "run")})
    assert run_cli(config, "--set", _perturb(absent)) == 2
    assert f"'{absent}' is not a TF of the GRN" in one_line_error(capsys)
    assert (tmp_path / "run" / "steps" / "grn.json").exists()
    assert not (tmp_path / "run" / "model").exists()


# ----------------------------------------------------------------------------- demo


def test_demo_is_a_run_of_a_builtin_config(tmp_path):
    from groundgan.cli._demo import demo_config

    args = build_parser().parse_args(["demo", "--out", str(tmp_path / "d"), "--steps", "3"])
    assert args.command == "demo" and callable(args.func)
    config = demo_config(args)
    assert config.output == tmp_path / "d"
    assert config["data"]["dataset"] == "pbmc68k_reduced"
    assert config["train"]["max_steps_stage1"] == config["train"]["max_steps_stage2"] == 3
    assert config["preprocess"]["n_top_genes"] == 200 and config["grn"]["k"] == 5
    assert config["train"]["precision"] == "fp32"
    assert config["train"]["recipe"] == "fast"
    bf16 = build_parser().parse_args(["demo", "--out", str(tmp_path / "d"), "--precision", "bf16"])
    assert demo_config(bf16)["train"]["precision"] == "bf16"


def test_demo_fails_in_one_line(tmp_path, capsys, monkeypatch):
    not_a_folder = tmp_path / "file"
    not_a_folder.write_text("")
    assert main(["demo", "--out", str(not_a_folder)]) == 2
    assert str(not_a_folder) in one_line_error(capsys, "demo")

    def no_network():
        raise gg.datasets.DownloadError("could not download x\n  Tried:\n  http://a: refused")

    monkeypatch.setattr(gg.datasets, "pbmc68k_reduced", no_network)
    assert main(["demo", "--out", str(tmp_path / "demo")]) == 2
    assert "could not download x Tried: http://a: refused" in one_line_error(capsys, "demo")

    def interrupt():
        raise KeyboardInterrupt

    monkeypatch.setattr(gg.datasets, "pbmc68k_reduced", interrupt)
    assert main(["demo", "--out", str(tmp_path / "demo")]) == 130
    err = capsys.readouterr().err.strip()
    assert err == "groundgan demo: interrupted; run the same command again to resume"


@pytest.mark.parametrize("keep", [False, True])
def test_demo_removes_its_checkpoints_unless_asked(tmp_path, capsys, monkeypatch, keep):
    from groundgan.cli import _run

    class FinishedPipeline(_run.Pipeline):
        def run(self, steps=None, force=False):
            (self.run_dir / "checkpoints").mkdir(parents=True)
            (self.run_dir / "checkpoints" / "checkpoint-stage2-000000001.pt").write_bytes(b"")
            return {}

    monkeypatch.setattr(_run, "Pipeline", FinishedPipeline)
    out = tmp_path / "demo"
    assert main(["demo", "--out", str(out), *(["--keep-checkpoints"] if keep else [])]) == 0
    assert (out / "checkpoints").exists() == keep
    assert ("checkpoints/ (kept)" in capsys.readouterr().out) == keep


@pytest.mark.filterwarnings("error::RuntimeWarning")  # e.g. dask's "no suitable IP address"
def test_demo_data_path_runs_offline(offline, tmp_path):
    """The demo's data path (embedded cells, TF list, GRN) with every outgoing connection
    refused, an empty cache and no GROUNDGAN_DATA_DIR."""
    from groundgan.cli._config import config_from_dict
    from groundgan.cli._demo import demo_settings
    from groundgan.cli._run import Pipeline

    args = build_parser().parse_args(["demo", "--out", str(tmp_path / "demo"), "--genes", "100"])
    pipeline = Pipeline(config_from_dict(demo_settings(args), tmp_path), log=lambda line: None)
    assert pipeline.run(["preprocess", "grn"]) == {"preprocess": "ran", "grn": "ran"}
    grn = gg.grn.read(tmp_path / "demo" / "grn.csv")
    assert len(grn) and set(grn["tf"]) <= set(gg.datasets.tf_list("human"))
    assert not (offline / "groundgan").exists()  # nothing downloaded or cached


@pytest.mark.slow
def test_demo_runs_end_to_end(tmp_path, capsys):
    out = tmp_path / "demo"
    args = ["--steps", "2", "--genes", "80", "--k", "2", "--cells", "200", "--test", "200"]
    assert main(["demo", "--out", str(out), *args, "--device", "cpu"]) == 0
    for name in ("simulated.h5ad", "evaluation.csv", "embedding.png", "grn.csv", "model"):
        assert (out / name).exists(), name
    assert not (out / "checkpoints").exists()
    assert "GroundGAN" in capsys.readouterr().out
