"""gg.datasets: the pooch registry, downloads (against a local HTTP server), TF lists, loaders."""

from __future__ import annotations

import functools
import hashlib
import http.server
import socket
import threading
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp

import groundgan as gg
from groundgan import datasets

PAPER_LOADERS = {
    "pbmc68k": ["pbmc68k/fresh_68k_pbmc_donor_a_filtered_gene_bc_matrices.tar.gz"],
    "paul15": ["paul15/paul15.h5"],
    "dahlin18": ["dahlin18/GSE107727_RAW.tar"],
    "tumor_all": ["tumor_all/collection.json"],
}


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _closed_port() -> int:
    """A local port nothing listens on (connections are refused at once)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def empty_cache(tmp_path, monkeypatch):
    """An empty data folder and no download retries (failures must be fast)."""
    cache = tmp_path / "cache"
    monkeypatch.setenv("GROUNDGAN_DATA_DIR", str(cache))
    monkeypatch.setattr(datasets, "DOWNLOAD_RETRIES", 0)
    return cache


@pytest.fixture
def http_server(tmp_path):
    """A small file served over HTTP on 127.0.0.1 from a thread: (base url, file path)."""
    root = tmp_path / "served"
    root.mkdir()
    served = root / "small.txt"
    served.write_text("Symbol\nGata1\nSpi1\n")

    class QuietHandler(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(
        ("127.0.0.1", 0), functools.partial(QuietHandler, directory=str(root))
    )
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", served
    server.shutdown()
    server.server_close()


# ----------------------------------------------------------------------------- registry


def test_registry_names_and_hashes_match_the_shared_files(shared_data_dir):
    for name in ["tf/Homo_sapiens_TF.txt", "tf/Mus_musculus_TF.txt", "mouse_10k_subset.h5ad"]:
        assert (shared_data_dir / name).exists(), name
        assert datasets.REGISTRY[name] == f"sha256:{_sha256(shared_data_dir / name)}"


def test_registry_has_the_paper_data_sets_with_public_urls():
    for files in PAPER_LOADERS.values():
        for name in files:
            assert name in datasets.REGISTRY
            assert datasets.REGISTRY[name] is None  # hash unknown: documented
            assert all(url.startswith(("https://", "http://")) for url in datasets.URLS[name])
    assert set(datasets.URLS) <= set(datasets.REGISTRY)


def test_fetch_unknown_name():
    with pytest.raises(ValueError, match="not a registered data file"):
        datasets.fetch("nope.h5ad")


def test_data_dir_follows_the_environment(empty_cache):
    assert datasets.data_dir() == empty_cache


# ----------------------------------------------------------------------------- downloads


def test_download_checks_the_hash(http_server, empty_cache, monkeypatch):
    base, served = http_server
    name = "test/small.txt"
    monkeypatch.setitem(datasets.REGISTRY, name, f"sha256:{_sha256(served)}")
    monkeypatch.setitem(datasets.URLS, name, [f"{base}/small.txt"])

    path = datasets.fetch(name)
    assert path == empty_cache / name
    assert path.read_text() == served.read_text()
    assert datasets.fetch(name) == path  # cached: no second download needed

    wrong = "test/wrong.txt"
    monkeypatch.setitem(datasets.REGISTRY, wrong, "sha256:" + "0" * 64)
    monkeypatch.setitem(datasets.URLS, wrong, [f"{base}/small.txt"])
    with pytest.raises(ValueError, match="integrity check"):
        datasets.fetch(wrong)
    assert not (empty_cache / wrong).exists()


def test_download_falls_back_to_the_next_address(http_server, empty_cache, monkeypatch):
    base, served = http_server
    name = "test/mirrored.txt"
    monkeypatch.setitem(datasets.REGISTRY, name, f"sha256:{_sha256(served)}")
    dead = f"http://127.0.0.1:{_closed_port()}/small.txt"
    monkeypatch.setitem(datasets.URLS, name, [dead, f"{base}/small.txt"])
    assert datasets.fetch(name).read_text() == served.read_text()


def _break_urls(monkeypatch, names):
    port = _closed_port()
    for name in names:
        urls = [
            f"http://127.0.0.1:{port}/{i}/{Path(name).name}"
            for i in range(len(datasets.URLS[name]))
        ]
        monkeypatch.setitem(datasets.URLS, name, urls)


@pytest.mark.parametrize("loader", sorted(PAPER_LOADERS))
def test_paper_loader_without_network_fails_clearly(loader, empty_cache, monkeypatch):
    _break_urls(monkeypatch, PAPER_LOADERS[loader])
    with pytest.raises(datasets.DownloadError) as info:
        getattr(datasets, loader)()
    message = str(info.value)
    assert PAPER_LOADERS[loader][0] in message
    assert "127.0.0.1" in message and "by hand" in message


def test_tf_list_ensembl_without_network_fails_clearly(empty_cache, monkeypatch):
    _break_urls(monkeypatch, ["tf/Mus_musculus_TF.txt"])
    with pytest.raises(datasets.DownloadError, match="Mus_musculus_TF"):
        gg.datasets.tf_list("mouse", ids="ensembl")


def test_undownloadable_file_missing_gives_clear_error(empty_cache):
    with pytest.raises(FileNotFoundError, match="GROUNDGAN_DATA_DIR"):
        gg.datasets.mouse_10k_subset()


# ----------------------------------------------------------------------------- TF lists


def test_tf_list_human_and_mouse(shared_data_dir):
    human = gg.datasets.tf_list("human")
    mouse = gg.datasets.tf_list("Mouse")
    assert len(human) == 1637  # AnimalTFDB 4.0, distinct non-empty symbols
    assert len(mouse) == len(set(mouse)) > 1600
    assert human == sorted(set(human)) and "" not in human
    assert {"SPI1", "GATA1", "TP53"} <= set(human)
    assert {"Spi1", "Gata1", "Trp53"} <= set(mouse)
    assert gg.datasets.tf_list("HUMAN") == human
    ensembl = gg.datasets.tf_list("mouse", ids="ensembl")
    assert all(i.startswith("ENSMUSG") for i in ensembl)


def test_tf_list_refuses_unknown_species_and_ids():
    with pytest.raises(gg.InvalidInputError, match=r"\['human', 'mouse'\]"):
        gg.datasets.tf_list("zebrafish")
    with pytest.raises(gg.InvalidInputError, match="ids"):
        gg.datasets.tf_list("human", ids="entrez")


@pytest.mark.parametrize("species", ["human", "mouse"])
def test_shipped_symbols_are_the_registered_tables(species, shared_data_dir):
    """The shipped lists are the Symbol column of the registered AnimalTFDB tables."""
    import pandas as pd

    entry = datasets.shipped_tf_manifest()[species]
    source = shared_data_dir / entry["source_file"]
    assert datasets.REGISTRY[entry["source_file"]] == f"sha256:{entry['source_sha256']}"
    assert _sha256(source) == entry["source_sha256"]
    values = pd.read_csv(source, sep="\t", dtype=str)["Symbol"].dropna().str.strip()
    expected = sorted(set(values[values != ""]))
    shipped = gg.datasets.tf_list(species)
    assert shipped == expected and len(shipped) == entry["n_symbols"]
    assert entry["source"].startswith("AnimalTFDB")


def test_shipped_symbols_are_one_per_line_and_hash_checked(tmp_path, monkeypatch):
    folder = Path(datasets.__file__).parent / "data"
    manifest = datasets.shipped_tf_manifest()
    for entry in manifest.values():
        text = (folder / entry["file"]).read_text()
        lines = text.splitlines()
        assert text.endswith("\n") and lines == sorted(set(lines)) and "" not in lines
        assert _sha256(folder / entry["file"]) == entry["sha256"]

    damaged = tmp_path / "data"
    damaged.mkdir()
    (damaged / datasets.SHIPPED_TF_MANIFEST).write_text(
        (folder / datasets.SHIPPED_TF_MANIFEST).read_text()
    )
    human = manifest["human"]["file"]
    (damaged / human).write_text((folder / human).read_text() + "NOT_A_TF\n")
    monkeypatch.setattr(datasets, "_shipped_folder", lambda: damaged)
    with pytest.raises(ValueError, match="integrity check.*reinstall groundgan"):
        gg.datasets.tf_list("human")


def test_tf_list_and_embedded_data_work_offline(offline):
    """No network, an empty cache and no GROUNDGAN_DATA_DIR: the first commands still work."""
    human, mouse = gg.datasets.tf_list("human"), gg.datasets.tf_list("mouse")
    assert len(human) == 1637 and len(mouse) == 1623
    assert {"SPI1", "GATA1"} <= set(human) and "Spi1" in mouse
    assert gg.datasets.pbmc68k_reduced().shape == (700, 765)
    with pytest.raises(OSError, match="network blocked"):
        socket.create_connection(("192.0.2.1", 80), timeout=1)
    assert not (offline / "groundgan").exists()  # nothing was downloaded or cached


# ----------------------------------------------------------------------------- loaders


def test_mouse_10k_subset_is_raw_counts(shared_data_dir):
    adata = gg.datasets.mouse_10k_subset()
    assert adata.shape == (10_000, 1_000)
    assert sp.issparse(adata.X)
    values = adata.X.data
    assert (values >= 0).all() and np.allclose(values, np.round(values))
    assert len(set(gg.datasets.tf_list("mouse")) & set(adata.var_names)) == 46


def test_pbmc68k_reduced_is_raw_counts(pbmc_counts):
    assert pbmc_counts.shape == (700, 765)
    values = pbmc_counts.X.data
    assert np.allclose(values, np.round(values)) and values.min() >= 0
