"""The base every simulator shares: one seed rule, one library-size rule, one save format."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch
from anndata import AnnData

import groundgan as gg
from conftest import TINY_MODEL  # tests/ is on sys.path (pytest's rootdir conftest)
from groundgan import baselines
from groundgan._seeds import SEED_BOUND, check_seed
from groundgan.model import _base
from groundgan.model._base import Simulator, resolve_library_size, verify_model_files

GAN_KWARGS = dict(latent_dim=8, generator_hidden=(16,), critic_hidden=(16,), sample_block_size=64)
GAN_TRAIN = dict(max_steps=2, batch_size=32, progress_bar=False, device="cpu")
MODELS = ("GroundGAN", "ScGAN", "CscGAN", "CWGAN", "ScDesign2", "SPARSim")
BAD_SEEDS = (-1, True, 1.5, "0", SEED_BOUND, np.float64(3))


def _normalised(counts: AnnData, n_genes: int) -> AnnData:
    totals = np.asarray(counts.X.sum(axis=0)).ravel()
    adata = counts[:, np.sort(np.argsort(-totals, kind="stable")[:n_genes])].copy()
    X = adata.X.toarray()
    adata.X = (X * (20_000 / X.sum(axis=1, keepdims=True))).astype(np.float32)
    return adata


def _build(name: str, pbmc_counts: AnnData, pbmc_grn: tuple[AnnData, object]):
    """A tiny trained model of class ``name`` on real PBMC cells."""
    torch.set_num_threads(1)
    if name == "GroundGAN":
        adata, grn = (x.copy() for x in pbmc_grn)
        gg.GroundGAN.setup_anndata(adata, grn=grn)
        model = gg.GroundGAN(adata, **TINY_MODEL)
        model.train(
            max_steps_stage1=2,
            max_steps_stage2=2,
            batch_size_stage1=32,
            batch_size_stage2=32,
            progress_bar=False,
            device="cpu",
        )
        return model
    cls = getattr(baselines, name)
    if name in ("ScDesign2", "SPARSim"):
        adata = pbmc_counts[:, :40].copy()
        cls.setup_anndata(adata)
        model = cls(adata)
        model.train(seed=0)
        return model
    adata = _normalised(pbmc_counts, 40)
    labels = "bulk_labels" if name in ("CscGAN", "CWGAN") else None
    cls.setup_anndata(adata, labels_key=labels)
    model = cls(adata, **GAN_KWARGS)
    model.train(**GAN_TRAIN)
    return model


@pytest.fixture(scope="module", params=MODELS)
def model(request, _pbmc_counts_cached, _pbmc_grn_cells_cached):
    return _build(request.param, _pbmc_counts_cached, _pbmc_grn_cells_cached)


def _cells(model, seed) -> np.ndarray:
    return np.asarray(model.sample(n_cells=20, seed=seed).X)


# ----------------------------------------------------------------------------- the class tree
def test_every_simulator_derives_from_the_base():
    public = [getattr(baselines, n) for n in dir(baselines) if not n.startswith("_")]
    simulators = [gg.GroundGAN] + [
        c for c in public if isinstance(c, type) and hasattr(c, "sample")
    ]
    assert {c.__name__ for c in simulators} == set(MODELS)
    for cls in simulators:
        assert issubclass(cls, Simulator), cls
        assert cls.setup_key() == f"groundgan_setup_{cls.__name__}"


def test_repr_and_parameter_counts(model):
    text = repr(model)
    assert type(model).__name__ in text.splitlines()[0]
    counts = model.n_parameters()
    assert counts and all(isinstance(v, int) and v > 0 for v in counts.values())


# ----------------------------------------------------------------------------- the seed rule
@pytest.mark.parametrize("seed", BAD_SEEDS, ids=repr)
def test_bad_seeds_are_refused_identically(model, seed):
    with pytest.raises(gg.InvalidInputError) as expected:
        check_seed(seed)
    with pytest.raises(gg.InvalidInputError) as err:
        model.sample(n_cells=5, seed=seed)
    assert str(err.value) == str(expected.value)


def test_train_refuses_bad_seeds_with_the_same_message(model):
    with pytest.raises(gg.InvalidInputError) as expected:
        check_seed(-3)
    with pytest.raises(gg.InvalidInputError) as err:
        if isinstance(model, gg.GroundGAN):
            model.train(max_steps_stage1=2, max_steps_stage2=2, seed=-3, progress_bar=False)
        elif hasattr(model, "params_"):
            model.train(seed=-3)
        else:
            model.train(**{**GAN_TRAIN, "seed": -3})
    assert str(err.value) == str(expected.value)


def test_same_seed_same_cells(model):
    np.testing.assert_array_equal(_cells(model, 7), _cells(model, 7))
    assert not np.array_equal(_cells(model, 7), _cells(model, 8))
    np.testing.assert_array_equal(_cells(model, np.int64(7)), _cells(model, 7))


def test_seed_none_draws_a_valid_recorded_seed(model):
    sim = model.sample(n_cells=5, seed=None)
    drawn = sim.uns["groundgan"]["seed"]
    assert 0 <= drawn < SEED_BOUND
    np.testing.assert_array_equal(
        np.asarray(sim.X), np.asarray(model.sample(n_cells=5, seed=drawn).X)
    )


# ----------------------------------------------------------------------------- the save format
def test_save_writes_a_manifest_that_load_checks(model, tmp_path):
    model.save(tmp_path / "m")
    manifest = json.loads((tmp_path / "m" / "manifest.json").read_text())
    assert {"model.json"} <= set(manifest["files"]) <= {p.name for p in (tmp_path / "m").iterdir()}
    restored = type(model).load(tmp_path / "m")
    np.testing.assert_array_equal(_cells(restored, 3), _cells(model, 3))
    meta = tmp_path / "m" / "model.json"
    meta.write_text(meta.read_text().replace('"version"', '"version" ', 1))
    with pytest.raises(gg.InvalidInputError, match="model.json does not match manifest.json"):
        type(model).load(tmp_path / "m")


def test_an_interrupted_save_is_refused_by_name(model, tmp_path, monkeypatch):
    """A save stopped between two files (an exception here; SIGKILL below) never loads as a
    mix of the old and the new model."""
    target = tmp_path / "m"
    model.save(target)
    written = []
    original = _base.atomic_write_bytes

    def stop_after_one(path, data):
        if written:
            raise KeyboardInterrupt
        written.append(path)
        original(path, data)

    monkeypatch.setattr(_base, "atomic_write_bytes", stop_after_one)
    with pytest.raises(KeyboardInterrupt):
        model.save(target, overwrite=True)
    monkeypatch.undo()
    with pytest.raises(gg.InvalidInputError, match="interrupted"):
        type(model).load(target)
    model.save(target, overwrite=True)  # saving again mends it
    np.testing.assert_array_equal(_cells(type(model).load(target), 1), _cells(model, 1))


def test_a_save_killed_mid_write_is_refused(tmp_path):
    """SIGKILL between two files of a save (no Python cleanup runs)."""
    target = tmp_path / "m"
    script = textwrap.dedent(
        f"""
        import os, signal
        import numpy as np
        from anndata import AnnData
        import groundgan as gg
        from groundgan.model import _base

        rng = np.random.default_rng(0)
        adata = AnnData(rng.poisson(2.0, size=(60, 8)).astype(np.float32))
        gg.baselines.SPARSim.setup_anndata(adata)
        model = gg.baselines.SPARSim(adata)
        model.train(seed=0)
        model.save({str(target)!r})
        original, written = _base.atomic_write_bytes, []

        def kill_after_one(path, data):
            if written:
                os.kill(os.getpid(), signal.SIGKILL)
            written.append(path)
            original(path, data)

        _base.atomic_write_bytes = kill_after_one
        model.save({str(target)!r}, overwrite=True)
        """
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    result = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True)
    assert result.returncode == -signal.SIGKILL, result.stderr.decode()[-2000:]
    with pytest.raises(gg.InvalidInputError, match="interrupted"):
        gg.baselines.SPARSim.load(target)


def test_directories_without_a_manifest_still_load(model, tmp_path):
    """Model directories written before manifests existed load as they are."""
    model.save(tmp_path / "m")
    (tmp_path / "m" / "manifest.json").unlink()
    meta = json.loads((tmp_path / "m" / "model.json").read_text())
    del meta[_base.MANIFEST_FLAG]
    (tmp_path / "m" / "model.json").write_text(json.dumps(meta))
    verify_model_files(tmp_path / "m")
    np.testing.assert_array_equal(_cells(type(model).load(tmp_path / "m"), 2), _cells(model, 2))


# ----------------------------------------------------------------------------- library size
def test_library_size_rule():
    X = np.full((4, 2), 5.0)
    adata = AnnData(X)
    assert resolve_library_size(adata, X, 7) == 7.0  # explicit
    assert resolve_library_size(adata, X, None) == 10.0  # the cells' median total
    assert resolve_library_size(adata, None, None) == 20_000.0  # counts: the paper's
    adata.uns["groundgan_preprocess"] = {"library_size": 1e4}
    assert resolve_library_size(adata, X, None) == 1e4  # what preprocess recorded
    assert resolve_library_size(adata, None, None) == 1e4
    for bad in (0, -1, float("nan"), True, "1e4"):
        with pytest.raises(gg.InvalidInputError, match="library_size must be a positive"):
            resolve_library_size(adata, X, bad)


def test_groundgan_reads_the_setup_key_of_earlier_versions(pbmc_grn_cells):
    adata, grn = pbmc_grn_cells
    gg.GroundGAN.setup_anndata(adata, grn=grn)
    adata.uns["_groundgan_setup"] = adata.uns.pop("groundgan_setup_GroundGAN")
    model = gg.GroundGAN(adata, **TINY_MODEL)
    assert model.layout.tfs and gg.GroundGAN.is_set_up(adata)
    gg.GroundGAN.setup_anndata(adata, grn=grn)  # a new set-up writes only the new key
    assert "_groundgan_setup" not in adata.uns and "groundgan_setup_GroundGAN" in adata.uns
