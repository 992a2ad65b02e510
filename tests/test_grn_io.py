"""gg.grn.read / write: text and Parquet tables, validation first, atomic writes, no pickles."""

from __future__ import annotations

import os

import numpy as np
import pandas as pd
import pytest

import groundgan as gg


@pytest.fixture
def grn() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "tf": ["Spi1", "Spi1", "Gata1", "NA"],  # "NA" is a gene name, not a missing value
            "target": ["Lyz2", "Cd74", "Hba-a1", "Cd74"],
            "importance": [3.5, 2.25, 1.0, 0.125],
        }
    )


@pytest.mark.parametrize("name", ["grn.csv", "grn.tsv", "grn.csv.gz", "GRN.TSV"])
def test_text_round_trip(tmp_path, grn, name):
    path = gg.grn.write(grn, tmp_path / name)
    assert path == tmp_path / name
    back = gg.grn.read(path)
    pd.testing.assert_frame_equal(back, gg.grn.validate(grn))


def test_csv_is_plain_text(tmp_path, grn):
    path = gg.grn.write(grn, tmp_path / "grn.csv")
    lines = path.read_text().splitlines()
    assert lines[0] == "tf,target,importance"
    assert lines[1] == "Spi1,Lyz2,3.5"
    tsv = gg.grn.write(grn, tmp_path / "grn.tsv").read_text().splitlines()
    assert tsv[0] == "tf\ttarget\timportance"


def test_parquet_round_trip(tmp_path, grn):
    pytest.importorskip("pyarrow")
    path = gg.grn.write(grn, tmp_path / "grn.parquet")
    assert path.read_bytes()[:4] == b"PAR1"
    pd.testing.assert_frame_equal(gg.grn.read(path), gg.grn.validate(grn))


def test_write_validates_first_and_writes_nothing(tmp_path, grn):
    bad = grn.copy()
    loop = pd.DataFrame({"tf": [bad.loc[0, "target"]], "target": [bad.loc[0, "tf"]]})
    bad = pd.concat([bad, loop], ignore_index=True)  # a cycle of two genes
    with pytest.raises(ValueError, match="cycle"):
        gg.grn.write(bad, tmp_path / "grn.csv")
    assert list(tmp_path.iterdir()) == []


def test_write_is_atomic(tmp_path, grn, monkeypatch):
    path = gg.grn.write(grn, tmp_path / "grn.csv")
    original = path.read_bytes()

    def fail(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(pd.DataFrame, "to_csv", fail)
    with pytest.raises(OSError, match="disk full"):
        gg.grn.write(grn.iloc[:1], path)
    assert path.read_bytes() == original  # the old file is intact
    assert [p.name for p in tmp_path.iterdir()] == ["grn.csv"]  # no temporary left behind


def test_write_overwrites_and_uses_normal_permissions(tmp_path, grn):
    path = gg.grn.write(grn, tmp_path / "sub" / "grn.csv")
    gg.grn.write(grn.iloc[:2], path)
    assert len(gg.grn.read(path)) == 2
    mask = os.umask(0)
    os.umask(mask)
    assert path.stat().st_mode & 0o777 == 0o666 & ~mask


def test_read_validates(tmp_path):
    path = tmp_path / "grn.csv"
    path.write_text("tf,target,importance\nA,B,1\nB,C,2\nC,A,1\n")
    with pytest.raises(ValueError, match="cycle: A -> B -> C -> A"):
        gg.grn.read(path)
    path.write_text("TF,target\nA,B\n")
    with pytest.raises(ValueError, match="found \\['TF', 'target'\\]"):
        gg.grn.read(path)
    path.write_text("tf,target,importance\nA,B,nan\n")
    with pytest.raises(ValueError, match="NaN"):
        gg.grn.read(path)


def test_read_without_importance(tmp_path):
    path = tmp_path / "grn.csv"
    path.write_text("tf,target\nA,B\nA,C\n")
    out = gg.grn.read(path)
    assert list(out.columns) == ["tf", "target"] and len(out) == 2
    assert not np.issubdtype(out["tf"].dtype, np.number)
