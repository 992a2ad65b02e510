"""Data sets: the embedded default, the paper's reference data and TF lists (pooch registry).

The TF symbols of :func:`tf_list` ship with the package (``groundgan/data``, hash-checked on
load) and need no network. Every downloadable file is listed once in :data:`REGISTRY` (file name -> sha256, or ``None``
where no hash is known) and :data:`URLS` (file name -> download addresses, tried in order).
Files are cached in ``pooch.os_cache("groundgan")`` or, when the environment variable
``GROUNDGAN_DATA_DIR`` is set, in that folder (read at each call, so it can be changed at run
time). A file already in the cache with the registered hash is never downloaded again.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pooch
import scanpy as sc
import scipy.sparse as sp
from anndata import AnnData

from ._validation import InvalidInputError

__all__ = [
    "REGISTRY",
    "URLS",
    "DownloadError",
    "dahlin18",
    "data_dir",
    "fetch",
    "mouse_10k_subset",
    "paul15",
    "pbmc68k",
    "pbmc68k_reduced",
    "shipped_tf_manifest",
    "tf_list",
    "tumor_all",
]

#: Environment variable naming the data/cache folder.
DATA_DIR_ENV = "GROUNDGAN_DATA_DIR"

#: How often a failed download is retried (pooch waits 1 s, 2 s, ... between attempts).
DOWNLOAD_RETRIES = 2

_TUMOR_ALL_COLLECTION = "968834a0-1895-40df-8720-666029b3bbac"

#: file name -> ``"sha256:<hex>"`` or ``None`` (hash unknown: the file is accepted as is).
REGISTRY: dict[str, str | None] = {
    # AnimalTFDB 4.0 human TF table (the paper used 3.0; see tf_list). Its symbols ship with
    # the package (groundgan/data); the full table is needed for ids="ensembl" only.
    "tf/Homo_sapiens_TF.txt": "sha256:3e7eef2d615e0b95c98e3ed817caeb9e341e369b1b1356ce7b947d7e2c53ff4d",
    # AnimalTFDB 3.0 mouse TF list, byte-identical to the file the GRouNdGAN authors used.
    "tf/Mus_musculus_TF.txt": "sha256:c09a702a433584eb8db30024b3712feaa69672dbdedf7a68489a1e719f884dd3",
    # 10,000 10x mouse cells x the first 1,000 genes (scanpy's test data, converted to h5ad).
    "mouse_10k_subset.h5ad": "sha256:b38cb761581ea391f04b1a337b6444918466077275128b558caa5975d4d22b22",
    # The paper's reference data sets: hashes not known (not verifiable offline).
    "pbmc68k/fresh_68k_pbmc_donor_a_filtered_gene_bc_matrices.tar.gz": None,
    "pbmc68k/68k_pbmc_barcodes_annotation.tsv": None,
    "paul15/paul15.h5": None,
    "dahlin18/GSE107727_RAW.tar": None,
    "tumor_all/collection.json": None,
}

#: file name -> download addresses, tried in order. Files without one are not downloadable.
URLS: dict[str, list[str]] = {
    "tf/Homo_sapiens_TF.txt": [
        "https://guolab.wchscu.cn/AnimalTFDB4_static/download/TF_list_final/Homo_sapiens_TF",
    ],
    "tf/Mus_musculus_TF.txt": [
        "http://bioinfo.life.hust.edu.cn/static/AnimalTFDB3/download/Mus_musculus_TF",
        "https://raw.githubusercontent.com/GuoBioinfoLab/AnimalTFDB3/master/AnimalTFDB3/"
        "static/AnimalTFDB3/download/Mus_musculus_TF",
    ],
    "pbmc68k/fresh_68k_pbmc_donor_a_filtered_gene_bc_matrices.tar.gz": [
        "https://cf.10xgenomics.com/samples/cell-exp/1.1.0/fresh_68k_pbmc_donor_a/"
        "fresh_68k_pbmc_donor_a_filtered_gene_bc_matrices.tar.gz",
    ],
    "pbmc68k/68k_pbmc_barcodes_annotation.tsv": [
        "https://raw.githubusercontent.com/10XGenomics/single-cell-3prime-paper/master/"
        "pbmc68k_analysis/68k_pbmc_barcodes_annotation.tsv",
    ],
    "paul15/paul15.h5": ["https://falexwolf.de/data/paul15.h5"],
    "dahlin18/GSE107727_RAW.tar": [
        "https://ftp.ncbi.nlm.nih.gov/geo/series/GSE107nnn/GSE107727/suppl/GSE107727_RAW.tar",
    ],
    "tumor_all/collection.json": [
        f"https://api.cellxgene.cziscience.com/curation/v1/collections/{_TUMOR_ALL_COLLECTION}",
    ],
}

_NOT_DOWNLOADABLE = {
    "mouse_10k_subset.h5ad": (
        "it is a conversion of scanpy's test data (tests/_data/10x-10k-subset.zarr) to h5ad "
        "and has no download address"
    ),
}

_TF_FILES = {"human": "tf/Homo_sapiens_TF.txt", "mouse": "tf/Mus_musculus_TF.txt"}

#: Manifest of the TF symbol lists shipped in ``groundgan/data`` (source, version, sha256).
SHIPPED_TF_MANIFEST = "tf_symbols.json"


class DownloadError(OSError):
    """A registered file could not be downloaded (no network, server down, moved file)."""


def data_dir() -> Path:
    """The folder files are cached in: ``$GROUNDGAN_DATA_DIR`` if set, else pooch's user cache.

    Examples
    --------
    >>> import groundgan as gg
    >>> gg.datasets.data_dir()  # doctest: +SKIP
    PosixPath('/home/me/.cache/groundgan')
    """
    configured = os.environ.get(DATA_DIR_ENV)
    return Path(configured) if configured else Path(pooch.os_cache("groundgan"))


def _registry() -> pooch.Pooch:
    """The pooch registry, built from :data:`REGISTRY` and the current environment."""
    return pooch.create(
        path=pooch.os_cache("groundgan"),
        base_url="",
        registry=dict(REGISTRY),
        urls={name: urls[0] for name, urls in URLS.items()},
        env=DATA_DIR_ENV,
        retry_if_failed=DOWNLOAD_RETRIES,
    )


def fetch(name: str, *, processor=None, progress: bool = False):
    """Local path of a registered file, downloading it (hash-checked) if it is not cached.

    Parameters
    ----------
    name
        A key of :data:`REGISTRY`, e.g. ``"tf/Mus_musculus_TF.txt"``.
    processor
        Optional pooch processor (e.g. :class:`pooch.Untar`) applied after the download;
        its return value is returned instead of the path.
    progress
        Show a download progress bar.

    Returns
    -------
    pathlib.Path
        The local file; with a ``processor``, whatever the processor returns instead (e.g.
        the list of extracted files of :class:`pooch.Untar`).

    Raises
    ------
    ValueError
        Unknown name, or a downloaded file whose sha256 does not match the registry.
    DownloadError
        The file is not cached and could not be downloaded from any of its addresses.
    FileNotFoundError
        The file is not cached and has no download address.

    Examples
    --------
    >>> import groundgan as gg
    >>> gg.datasets.fetch("tf/Mus_musculus_TF.txt")  # doctest: +SKIP
    PosixPath('.../tf/Mus_musculus_TF.txt')
    """
    import requests

    if name not in REGISTRY:
        raise ValueError(f"{name!r} is not a registered data file; known files: {sorted(REGISTRY)}")
    registry = _registry()
    local = Path(registry.abspath) / name
    if name not in URLS:
        if not local.exists():
            raise FileNotFoundError(
                f"{name} is not in {registry.abspath} and cannot be downloaded: "
                f"{_NOT_DOWNLOADABLE.get(name, 'no download address')}. Put the file there or "
                f"point {DATA_DIR_ENV} to a folder holding it."
            )
        return _wrap(registry.fetch(name, processor=processor))

    failures = []
    for url in URLS[name]:
        registry.urls[name] = url
        try:
            return _wrap(registry.fetch(name, processor=processor, progressbar=progress))
        except requests.RequestException as err:
            failures.append(f"{url}: {type(err).__name__}: {err}")
        except ValueError as err:
            raise ValueError(
                f"{name} downloaded from {url} failed its integrity check (the file changed "
                f"upstream or the download was corrupted): {err}"
            ) from err
    raise DownloadError(
        f"could not download {name} (no network, or the server is down or moved the file). "
        "Tried:\n  " + "\n  ".join(failures) + f"\nDownload it by hand to {local} "
        f"(or set {DATA_DIR_ENV} to a folder holding {name})."
    )


def _wrap(result):
    return Path(result) if isinstance(result, str) else result


# ----------------------------------------------------------------------------- TF lists


def tf_list(species: str, *, ids: str = "symbol") -> list[str]:
    """Transcription factors of a species from AnimalTFDB (unique, sorted).

    Parameters
    ----------
    species
        ``"human"`` or ``"mouse"`` (case-insensitive).
    ids
        ``"symbol"`` (gene symbols) or ``"ensembl"`` (Ensembl gene ids, column ``Ensembl`` of
        the full AnimalTFDB table), for data whose ``var_names`` are Ensembl ids.

    Returns
    -------
    list of str
        Sorted unique identifiers (empty entries dropped).

    Raises
    ------
    InvalidInputError
        Unknown ``species`` or ``ids``.
    ValueError
        A shipped symbol list that fails its sha256 check (a damaged installation).
    DownloadError
        ``ids="ensembl"``: the full table is not cached and cannot be downloaded.

    Notes
    -----
    The symbols ship with the package (``groundgan/data/tf_symbols_<species>.txt``, with the
    source file's and their own sha256 in ``tf_symbols.json``), so ``ids="symbol"`` needs no
    network and no data folder. ``ids="ensembl"`` reads the full AnimalTFDB table through the
    registry (:func:`fetch`: the cache, ``GROUNDGAN_DATA_DIR`` or a download).

    The mouse list is AnimalTFDB 3.0, the exact file the GRouNdGAN authors used. The human
    list is **AnimalTFDB 4.0** (1,637 symbols): the paper used AnimalTFDB 3.0 for both species,
    but 3.0 is no longer distributed, so a human GRN built with this list can contain TFs
    that the paper's did not (and miss a few it had).

    Examples
    --------
    >>> import groundgan as gg
    >>> tfs = gg.datasets.tf_list("mouse")
    >>> len(tfs), tfs[:3]
    (1623, ['2010315B03Rik', '2210418O10Rik', '2410141K09Rik'])
    """
    key = str(species).lower()
    if key not in _TF_FILES:
        raise InvalidInputError(
            f"species must be one of {sorted(_TF_FILES)} (any case), got {species!r}"
        )
    if ids == "symbol":
        return _shipped_tf_symbols(key)
    if ids != "ensembl":
        raise InvalidInputError(f"ids must be one of ['ensembl', 'symbol'], got {ids!r}")
    table = pd.read_csv(fetch(_TF_FILES[key]), sep="\t", dtype=str)
    values = table["Ensembl"].dropna().str.strip()
    return sorted(set(values[values != ""]))


def shipped_tf_manifest() -> dict[str, dict[str, Any]]:
    """Provenance of the shipped TF symbol lists: ``{species: entry}``.

    Returns
    -------
    dict
        Per species: ``file``, ``sha256`` (of the shipped file), ``n_symbols``, ``source``
        (AnimalTFDB version and file), ``source_file`` (its name in :data:`REGISTRY`) and
        ``source_sha256``.
    """
    text = (_shipped_folder() / SHIPPED_TF_MANIFEST).read_text(encoding="utf-8")
    return json.loads(text)["files"]


def _shipped_tf_symbols(species: str) -> list[str]:
    """The shipped TF symbols of ``"human"`` or ``"mouse"``, checked against their sha256."""
    entry = shipped_tf_manifest()[species]
    data = (_shipped_folder() / entry["file"]).read_bytes()
    digest = hashlib.sha256(data).hexdigest()
    if digest != entry["sha256"]:
        raise ValueError(
            f"the shipped TF list groundgan/data/{entry['file']} failed its integrity check "
            f"(sha256 {digest}, expected {entry['sha256']}): the installation is damaged; "
            "reinstall groundgan"
        )
    return [line for line in data.decode("utf-8").splitlines() if line]


def _shipped_folder():
    """The package's data folder (a :mod:`importlib.resources` traversable)."""
    from importlib import resources

    return resources.files("groundgan") / "data"


# ----------------------------------------------------------------------------- data sets


def pbmc68k_reduced() -> AnnData:
    """The embedded default data set: scanpy's bundled PBMC 68k subset with raw UMI counts.

    700 cells x 765 genes of the 10x PBMC 68k Donor A data the paper used. scanpy ships
    them as ``log1p`` of counts normalised to 10,000 per cell (``.raw.X``); the raw counts are
    recovered exactly as ``round(expm1(raw.X) * n_counts / 1e4)``. Needs no network.

    Returns
    -------
    AnnData
        Integer raw counts (``float32``, sparse CSR) in ``X`` and the cell annotations of the
        bundled file in ``obs`` (``bulk_labels``: 10 cell types, ``n_counts``, ...).
    """
    bundled = sc.datasets.pbmc68k_reduced()
    logged = bundled.raw.X
    logged = logged.toarray() if sp.issparse(logged) else np.asarray(logged)
    scale = bundled.obs["n_counts"].to_numpy()[:, None] / 1e4
    counts = np.rint(np.expm1(logged) * scale).astype(np.float32)
    obs = bundled.obs.copy()
    var = bundled.raw.var.copy()
    adata = AnnData(X=sp.csr_matrix(counts), obs=obs, var=var)
    adata.uns["groundgan_source"] = "scanpy.datasets.pbmc68k_reduced (raw counts recovered)"
    return adata


def mouse_10k_subset() -> AnnData:
    """10,000 real 10x mouse cells x the first 1,000 genes of the genome (raw UMI counts).

    Taken from scanpy's test data and converted to h5ad; 46 of the genes are AnimalTFDB 3.0
    mouse TFs. It has no download address: the file must be in the data folder
    (``GROUNDGAN_DATA_DIR``). Useful for tests and benchmarks.

    Returns
    -------
    AnnData
        Sparse raw counts in ``X`` and ``var["gene_ids"]`` (Ensembl ids).

    Examples
    --------
    >>> import groundgan as gg
    >>> gg.datasets.mouse_10k_subset()  # doctest: +SKIP
    AnnData object with n_obs × n_vars = 10000 × 1000
    """
    adata = sc.read_h5ad(fetch("mouse_10k_subset.h5ad"))
    adata.uns["groundgan_source"] = "mouse_10k_subset.h5ad (scanpy test data, 10x mouse)"
    return adata


def pbmc68k(annotations: bool = True, progress: bool = True) -> AnnData:
    """10x Genomics Fresh 68k PBMCs (Donor A), the paper's PBMC-All reference (68,579 cells).

    Downloads the filtered gene-barcode matrices (about 120 MB) from 10x Genomics and, with
    ``annotations=True``, the cell-type labels of Zheng et al. (2017) from 10x Genomics'
    ``single-cell-3prime-paper`` repository. The paper's PBMC-CTL data set are the cells
    labelled ``"CD8+ Cytotoxic T"``.

    Parameters
    ----------
    annotations
        Add ``obs["celltype"]`` from the published barcode annotation.
    progress
        Show download progress bars.

    Returns
    -------
    AnnData
        Cells x genes (gene symbols made unique) with raw UMI counts (sparse) in ``X``; with
        ``annotations=True`` also ``obs["celltype"]``.

    Examples
    --------
    >>> import groundgan as gg
    >>> adata = gg.datasets.pbmc68k()  # doctest: +SKIP
    >>> ctl = adata[adata.obs["celltype"] == "CD8+ Cytotoxic T"].copy()  # doctest: +SKIP
    """
    files = fetch(
        "pbmc68k/fresh_68k_pbmc_donor_a_filtered_gene_bc_matrices.tar.gz",
        processor=pooch.Untar(),
        progress=progress,
    )
    matrix = next(Path(f) for f in files if Path(f).name in ("matrix.mtx", "matrix.mtx.gz"))
    adata = sc.read_10x_mtx(matrix.parent, var_names="gene_symbols", make_unique=True)
    if annotations:
        labels = pd.read_csv(
            fetch("pbmc68k/68k_pbmc_barcodes_annotation.tsv", progress=progress), sep="\t"
        )
        adata.obs["celltype"] = pd.Categorical(
            adata.obs_names.map(dict(zip(labels["barcodes"], labels["celltype"], strict=False)))
        )
    adata.uns["groundgan_source"] = "10x Genomics fresh_68k_pbmc_donor_a (filtered matrices)"
    return adata


def paul15(progress: bool = True) -> AnnData:
    """Paul et al. (2015) mouse bone marrow (GEO GSE72857), the paper's BoneMarrow reference.

    2,730 cells x 3,451 informative genes, read exactly like :func:`scanpy.datasets.paul15`
    (same public file, same gene selection) but cached through the groundgan registry.

    Parameters
    ----------
    progress
        Show a download progress bar.

    Returns
    -------
    AnnData
        The (non-logarithmised) UMI counts in ``X`` and the cluster labels in
        ``obs["paul15_clusters"]``.

    Examples
    --------
    >>> import groundgan as gg
    >>> gg.datasets.paul15()  # doctest: +SKIP
    AnnData object with n_obs × n_vars = 2730 × 3451
    """
    import h5py

    with h5py.File(fetch("paul15/paul15.h5", progress=progress), "r") as f:
        x = f["data.debatched"][()].astype(np.float32)
        gene_names = f["data.debatched_rownames"][()].astype(str)
        cell_names = f["data.debatched_colnames"][()].astype(str)
        clusters = f["cluster.id"][()].flatten().astype(int)
        informative = f["info.genes_strings"][()].astype(str)
    adata = AnnData(x.T)
    adata.obs_names = cell_names
    adata.var_names = [name.split(";")[0] for name in gene_names]
    cell_types = 6 * ["Ery"] + "MEP Mk GMP GMP DC Baso Baso Mo Mo Neu Neu Eos Lymph".split()
    adata.obs["paul15_clusters"] = pd.Categorical([f"{i}{cell_types[i - 1]}" for i in clusters])
    adata = adata[:, np.intersect1d(informative, adata.var_names)].copy()
    adata.uns["groundgan_source"] = "Paul et al. 2015 (GSE72857), scanpy's paul15 file"
    return adata


def dahlin18(progress: bool = True) -> AnnData:
    """Dahlin et al. (2018) mouse HSPCs (GEO GSE107727, 10x), the paper's Dahlin reference.

    Downloads GEO's ``GSE107727_RAW.tar`` and concatenates the six wild-type samples (LSK:
    SIGAB1, SIGAC1, SIGAD1; LK: SIGAF1, SIGAG1, SIGAH1). The authors' cell QC (the 44,802
    cells of their force-directed graph) is not applied: run :func:`groundgan.pp.preprocess`.

    Parameters
    ----------
    progress
        Show a download progress bar.

    Returns
    -------
    AnnData
        Raw counts (sparse) in ``X``, Ensembl gene ids as ``var_names`` (use
        ``tf_list("mouse", ids="ensembl")``), the sample name in ``obs["sample"]`` and its
        sorting gate (``"LSK"`` or ``"LK"``) in ``obs["gate"]``.

    Examples
    --------
    >>> import groundgan as gg
    >>> adata = gg.datasets.dahlin18()  # doctest: +SKIP
    """
    import anndata as ad

    files = fetch("dahlin18/GSE107727_RAW.tar", processor=pooch.Untar(), progress=progress)
    gates = {
        "SIGAB1": "LSK",
        "SIGAC1": "LSK",
        "SIGAD1": "LSK",
        "SIGAF1": "LK",
        "SIGAG1": "LK",
        "SIGAH1": "LK",
    }
    parts = {}
    for path in sorted(Path(f) for f in files):
        sample = next((s for s in gates if f"_{s}_" in path.name), None)
        if sample is None or "counts" not in path.name:
            continue
        part = sc.read_text(path).T  # genes x cells on file
        part.X = sp.csr_matrix(part.X)
        part.obs_names = [f"{cell}_{sample}" for cell in part.obs_names]
        part.obs["sample"] = sample
        part.obs["gate"] = gates[sample]
        parts[sample] = part
    if len(parts) != len(gates):
        raise FileNotFoundError(
            f"GSE107727_RAW.tar lacks samples {sorted(set(gates) - set(parts))}"
        )
    adata = ad.concat(list(parts.values()), join="outer")
    adata.uns["groundgan_source"] = "Dahlin et al. 2018 (GSE107727), wild-type samples"
    return adata


def tumor_all(dataset_id: str | None = None, progress: bool = True) -> AnnData:
    """Han et al. (2022) follicular lymphoma cells (tumour and microenvironment): Tumor-All.

    The data set is distributed by CZ CELLxGENE Discover (collection
    ``968834a0-1895-40df-8720-666029b3bbac``). The collection's record is fetched from the
    public curation API; the h5ad of the data set with the most cells (136,147 in the paper)
    is then downloaded, or the one named by ``dataset_id``. No hash is known for either file.

    Parameters
    ----------
    dataset_id
        CELLxGENE dataset id within the collection; default: the largest data set.
    progress
        Show download progress bars.

    Returns
    -------
    AnnData
        Raw counts (from the file's ``raw.X`` where present) in ``X`` and gene symbols
        (``var["feature_name"]``, made unique) as ``var_names``.

    Examples
    --------
    >>> import groundgan as gg
    >>> adata = gg.datasets.tumor_all()  # doctest: +SKIP
    """
    collection = json.loads(Path(fetch("tumor_all/collection.json")).read_text())
    datasets = collection.get("datasets", [])
    if dataset_id is None:
        if not datasets:
            raise ValueError("the CELLxGENE collection record lists no data sets")
        chosen = max(datasets, key=lambda d: d.get("cell_count") or 0)
    else:
        chosen = next((d for d in datasets if d.get("dataset_id") == dataset_id), None)
        if chosen is None:
            known = [d.get("dataset_id") for d in datasets]
            raise ValueError(f"dataset_id {dataset_id!r} not in the collection; known: {known}")
    url = next(a["url"] for a in chosen.get("assets", []) if a.get("filetype") == "H5AD")
    path = _retrieve(url, f"tumor_all/{chosen['dataset_id']}.h5ad", progress)
    adata = sc.read_h5ad(path)
    if adata.raw is not None:
        adata = AnnData(X=adata.raw.X, obs=adata.obs, var=adata.raw.var)
    if "feature_name" in adata.var:
        adata.var["gene_ids"] = adata.var_names
        adata.var_names = adata.var["feature_name"].astype(str).to_numpy()
        adata.var_names_make_unique()
    adata.uns["groundgan_source"] = f"CELLxGENE dataset {chosen['dataset_id']} (Han et al. 2022)"
    return adata


def _retrieve(url: str, name: str, progress: bool) -> Path:
    """Download a file found at run time (not in the registry; no known hash) into the cache."""
    import requests

    target = data_dir() / name
    try:
        return Path(
            pooch.retrieve(
                url, known_hash=None, fname=target.name, path=target.parent, progressbar=progress
            )
        )
    except requests.RequestException as err:
        raise DownloadError(
            f"could not download {name} from {url}: {type(err).__name__}: {err}. Download it "
            f"by hand to {target}."
        ) from err
