"""``pdd data ...`` through the real command-line entry point."""

from __future__ import annotations

from pdd.cli import main
from pdd.data.split import read_split_csv


def test_synthetic_then_status_then_tamper(tmp_path, capsys, raw_builders):
    prepared = tmp_path / "prepared"
    assert main(["data", "synthetic", "headct", "--out", str(prepared / "headct"), "--size", "48",
                 "--n-train", "3", "--n-test", "2", "--seed", "4"]) == 0
    assert len(read_split_csv(prepared / "headct")) == 7
    raw_builders["chexpert"](tmp_path / "raw" / "chexpert", n_train=1, n_test=1)
    capsys.readouterr()

    assert main(["data", "status", "--raw-root", str(tmp_path / "raw"), "--prepared-root", str(prepared)]) == 0
    lines = {line.split()[0]: line for line in capsys.readouterr().out.splitlines()}
    assert "verified" in lines["headct"]
    assert "raw present" in lines["chexpert"]
    assert "missing" in lines["brainmri"] and "pdd data download brainmri" in lines["brainmri"]

    (prepared / "headct" / "train/good/001.png").unlink()
    main(["data", "status", "--raw-root", str(tmp_path / "raw"), "--prepared-root", str(prepared)])
    headct = next(line for line in capsys.readouterr().out.splitlines() if line.startswith("headct"))
    assert " prepared " in headct and "train/good/001.png is missing" in headct


def test_prepare_reports_counts_and_protocol_differences(tmp_path, capsys, raw_builders):
    raw = raw_builders["chexpert"](tmp_path / "raw", n_train=3, n_test=2)
    assert main(["data", "prepare", "chexpert", "--raw", str(raw), "--out", str(tmp_path / "out")]) == 0
    captured = capsys.readouterr()
    assert "train 3" in captured.out
    assert "warning: chexpert train: 3 prepared, protocol expects 4499" in captured.err


def test_prepare_without_raw_data_exits_2_with_instructions(tmp_path, capsys):
    code = main(["data", "prepare", "headct", "--raw", str(tmp_path / "none"), "--out", str(tmp_path / "out")])
    assert code == 2
    err = capsys.readouterr().err
    assert "pdd data: error: no HeadCT" in err and "felipekitamura/head-ct-hemorrhage" in err
