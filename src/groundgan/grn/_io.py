"""Reading and writing GRN tables (CSV, TSV, Parquet); never pickles."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pandas as pd

from ._validate import validate

__all__ = ["read", "write"]

_COMPRESSION = {".gz": "gzip", ".bz2": "bz2", ".xz": "xz", ".zst": "zstd"}


def _format(path: Path) -> str:
    suffixes = [s.lower() for s in path.suffixes]
    if suffixes and suffixes[-1] == ".parquet":
        return "parquet"
    core = suffixes[:-1] if suffixes and suffixes[-1] in _COMPRESSION else suffixes
    return "tsv" if core and core[-1] in (".tsv", ".tab") else "csv"


def _require_pyarrow() -> None:
    try:
        import pyarrow  # noqa: F401
    except ImportError:
        raise ImportError(
            "writing or reading .parquet GRN files needs pyarrow (pip install pyarrow); "
            "use a .csv file otherwise"
        ) from None


def read(path: str | os.PathLike) -> pd.DataFrame:
    """Read a GRN table written by :func:`write` (or any table with ``tf``, ``target``).

    Parameters
    ----------
    path
        ``.csv`` (comma-separated), ``.tsv``/``.tab`` (tab-separated), either optionally
        compressed (``.gz``, ``.bz2``, ``.xz``, ``.zst``), or ``.parquet`` (needs pyarrow).

    Returns
    -------
    pandas.DataFrame
        The validated GRN (see :func:`groundgan.grn.validate`): ``tf``, ``target`` as
        strings, ``importance`` as float64 if present.

    Examples
    --------
    >>> import groundgan as gg
    >>> grn = gg.grn.read("grn.csv")  # doctest: +SKIP
    """
    path = Path(path)
    kind = _format(path)
    if kind == "parquet":
        _require_pyarrow()
        table = pd.read_parquet(path)
    else:
        sep = "\t" if kind == "tsv" else ","
        # gene names such as "NA" or "NAN" are names, not missing values; importances can be
        table = pd.read_csv(
            path,
            sep=sep,
            dtype={"tf": str, "target": str},
            keep_default_na=False,
            na_values={"importance": ["", "nan", "NaN", "NA", "null"]},
        )
    return validate(table)


def write(grn: pd.DataFrame, path: str | os.PathLike) -> Path:
    """Validate a GRN and write it atomically (a temporary file, then :func:`os.replace`).

    Parameters
    ----------
    grn
        The GRN table (validated first with :func:`groundgan.grn.validate`; an invalid GRN
        raises and writes nothing).
    path
        Target file; its suffix chooses the format as in :func:`read`.

    Returns
    -------
    pathlib.Path
        The path written.

    Examples
    --------
    >>> import pandas as pd
    >>> import groundgan as gg
    >>> grn = pd.DataFrame({"tf": ["A"], "target": ["B"], "importance": [1.0]})
    >>> gg.grn.write(grn, "grn.csv")  # doctest: +SKIP
    PosixPath('grn.csv')
    """
    table = validate(grn)
    path = Path(path)
    kind = _format(path)
    if kind == "parquet":
        _require_pyarrow()
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(handle)
    try:
        if kind == "parquet":
            table.to_parquet(tmp, index=False)
        else:
            compression = _COMPRESSION.get(path.suffix.lower())
            table.to_csv(
                tmp, sep="\t" if kind == "tsv" else ",", index=False, compression=compression
            )
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask
