"""The real HeadCT download in ../shared (skipped when absent)."""

from __future__ import annotations

import hashlib

import pytest

from pdd.data.registry import DATASETS
from pdd.data.split import EXCLUDED, TEST, TRAIN, read_split_csv
from pdd.io import sha256_file

pytestmark = [pytest.mark.shared_data, pytest.mark.slow]


def test_real_headct_gives_60_40_100_with_every_checksum_verified(shared_headct, tmp_path):
    spec = DATASETS["headct"]
    report = spec.prepare(shared_headct, tmp_path / "a", seed=0)  # also checks the embedded sha256 manifest
    assert report.counts == {"train": 60, "test": 140, "test/normal": 40, "test/anomalous": 100}
    assert spec.protocol_mismatches(report.counts) == []

    md5 = {}
    for line in (shared_headct / "MANIFEST.md5").read_text().splitlines():
        digest, name = line.split(maxsplit=1)
        md5[name.removeprefix("./")] = digest
    rows = read_split_csv(tmp_path / "a")
    assert not [row for row in rows if row.split == EXCLUDED]
    for row in rows:
        source = shared_headct / row.source
        assert hashlib.md5(source.read_bytes()).hexdigest() == md5[row.source]
        assert row.source_sha256 == sha256_file(source)
        assert row.sha256 == sha256_file(tmp_path / "a" / row.path)
    assert {row.label for row in rows if row.split == TRAIN} == {0}
    assert sum(row.label for row in rows if row.split == TEST) == 100

    spec.prepare(shared_headct, tmp_path / "b", seed=0)
    assert (tmp_path / "a/split.csv").read_bytes() == (tmp_path / "b/split.csv").read_bytes()
