"""`pointengine segment`: label files with raw ids, folders and globs, pictures and point clouds, every
file format, and bad input answered in one line with nothing partial written."""

import re
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

from pointengine import Segmenter
from pointengine.cli import main
from pointengine.datasets import load_dataset_config, read_labels

KITTI = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "semantickitti" / "sequences" / "00"
RAW_IDS = set(load_dataset_config("semantickitti").learning_map_inv.values())


def scan_file(folder: Path, name: str = "scan.bin", n: int = 2000, seed: int = 0) -> Path:
    g = torch.Generator().manual_seed(seed)
    points = torch.cat([(torch.rand(n, 3, generator=g) - 0.5) * 30, torch.rand(n, 1, generator=g)], 1)
    path = folder / name
    path.parent.mkdir(parents=True, exist_ok=True)
    points.numpy().astype("<f4").tofile(path)
    return path


def segment(*args) -> int:
    return main(["segment", "--config", "minkunet_cr0.5", *map(str, args)])


def files_in(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file())


def test_real_scan_to_a_label_file(tmp_path, capsys):
    scan = KITTI / "velodyne" / "000000.bin"
    if not scan.exists():
        pytest.skip("../shared/data is not here")
    out = tmp_path / "pred.label"
    assert main(["segment", str(scan), "--out", str(out)]) == 0
    raw, instance = read_labels(out)
    assert raw.shape == (124_668,) and out.stat().st_size == 4 * 124_668
    assert set(raw.unique().tolist()) <= RAW_IDS - {0} and bool((instance == 0).all())
    assert "segmented 1 scan (124,668 points)" in capsys.readouterr().out
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        labels = Segmenter()(np.fromfile(scan, "<f4").reshape(-1, 4))
    assert torch.equal(load_dataset_config("semantickitti").map_labels(raw), labels)


def test_untrained_model_says_so_and_the_default_is_trained(tmp_path, capsys):
    assert segment(scan_file(tmp_path), "--out", tmp_path / "out") == 0
    assert "'minkunet_cr0.5' has no trained weights yet" in capsys.readouterr().err
    assert main(["segment", str(scan_file(tmp_path)), "--out", str(tmp_path / "default")]) == 0
    assert "no trained weights" not in capsys.readouterr().err


def test_views_label_as_segmenter_does_and_zero_is_refused(tmp_path, capsys):
    scan = scan_file(tmp_path)
    assert main(["segment", str(scan), "--views", "3", "--out", str(tmp_path / "pred.label")]) == 0
    raw, _ = read_labels(tmp_path / "pred.label")
    labels = Segmenter("demo", views=3)(np.fromfile(scan, "<f4").reshape(-1, 4))
    assert torch.equal(load_dataset_config("semantickitti").map_labels(raw), labels)
    capsys.readouterr()
    assert main(["segment", str(scan), "--views", "0", "--out", str(tmp_path / "zero.label")]) == 2
    assert "views must be a positive integer, got 0" in capsys.readouterr().err


def test_folder_and_glob_keep_relative_paths(tmp_path, capsys):
    for seq in ("00", "01"):
        scan_file(tmp_path / "in" / seq / "velodyne", "000000.bin", seed=int(seq))
    (tmp_path / "in" / "notes.txt").write_text("not a scan")
    assert segment(tmp_path / "in", "--out", tmp_path / "out", "--format", "npy") == 0
    assert files_in(tmp_path / "out") == ["00/velodyne/000000.npy", "01/velodyne/000000.npy"]
    ids = np.load(tmp_path / "out" / "00" / "velodyne" / "000000.npy")
    assert ids.dtype == np.uint32 and ids.shape == (2000,) and set(ids.tolist()) <= RAW_IDS
    assert "segmented 2 scans (4,000 points)" in capsys.readouterr().out
    assert segment(str(tmp_path / "in" / "*" / "velodyne" / "*.bin"), "--out", tmp_path / "glob") == 0
    assert files_in(tmp_path / "glob") == ["00/velodyne/000000.label", "01/velodyne/000000.label"]
    # two files of one name given one by one would write one output: refused before anything runs
    one, two = (tmp_path / "in" / seq / "velodyne" / "000000.bin" for seq in ("00", "01"))
    assert segment(one, two, "--out", tmp_path / "clash") == 2
    assert "two scans would write the same output file" in capsys.readouterr().err
    assert not (tmp_path / "clash").exists()


def test_png_and_ply(tmp_path):
    scan = scan_file(tmp_path)
    assert segment(scan, "--out", tmp_path / "out", "--png", "--ply") == 0
    png = (tmp_path / "out" / "scan.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 10_000
    ply = (tmp_path / "out" / "scan.ply").read_bytes()
    header, body = ply.split(b"end_header\n")
    assert b"element vertex 2000" in header and len(body) == 2000 * (12 + 4)
    rows = np.frombuffer(body, dtype=[("xyz", "<f4", 3), ("rgb", "u1", 3), ("label", "u1")])
    points = np.fromfile(scan, "<f4").reshape(-1, 4)
    assert np.array_equal(rows["xyz"], points[:, :3])
    colors = np.array(load_dataset_config("semantickitti").colors, dtype=np.uint8)
    assert np.array_equal(rows["rgb"], colors[rows["label"]])
    raw, _ = read_labels(tmp_path / "out" / "scan.label")
    assert np.array_equal(load_dataset_config("semantickitti").map_labels(raw).numpy(), rows["label"])


def test_npy_and_nuscenes_inputs(tmp_path):
    points = np.fromfile(scan_file(tmp_path), "<f4").reshape(-1, 4)
    np.save(tmp_path / "scan.npy", points.astype(np.float64))
    assert segment(tmp_path / "scan.npy", "--out", tmp_path / "a.label") == 0
    assert segment(tmp_path / "scan.bin", "--out", tmp_path / "b.label") == 0
    assert (tmp_path / "a.label").read_bytes() == (tmp_path / "b.label").read_bytes()
    sweep = np.concatenate([points[:, :3], 255 * points[:, 3:], np.zeros((len(points), 1), np.float32)], 1)
    sweep.astype("<f4").tofile(tmp_path / "sweep.pcd.bin")
    out = tmp_path / "nu"
    assert main(["segment", "--config", "minkunet_cr0.5_nuscenes", str(tmp_path / "sweep.pcd.bin"), "--out", str(out)]) == 0
    raw = np.fromfile(out / "sweep.label", "<u4")
    assert raw.shape == (2000,) and set(raw.tolist()) <= set(load_dataset_config("nuscenes").learning_map_inv.values())


def write_ascii_ply(path: Path, points: np.ndarray) -> None:
    header = (f"ply\nformat ascii 1.0\nelement vertex {len(points)}\nproperty float x\nproperty float y\n"
              "property float z\nproperty float intensity\nend_header\n")
    path.write_text(header + "\n".join(" ".join(f"{v:.6f}" for v in row) for row in points) + "\n")


def write_ascii_pcd(path: Path, points: np.ndarray) -> None:
    header = (f"VERSION 0.7\nFIELDS x y z intensity\nSIZE 4 4 4 4\nTYPE F F F F\nCOUNT 1 1 1 1\nWIDTH {len(points)}\n"
              f"HEIGHT 1\nVIEWPOINT 0 0 0 1 0 0 0\nPOINTS {len(points)}\nDATA ascii\n")
    path.write_text(header + "\n".join(" ".join(f"{v:.6f}" for v in row) for row in points) + "\n")


@pytest.mark.parametrize("suffix", [".ply", ".pcd"])
def test_open3d_formats(tmp_path, suffix):
    pytest.importorskip("open3d")
    points = np.fromfile(scan_file(tmp_path), "<f4").reshape(-1, 4)
    points = np.round(points, 6)
    (write_ascii_ply if suffix == ".ply" else write_ascii_pcd)(tmp_path / f"cloud{suffix}", points)
    points.astype("<f4").tofile(tmp_path / "same.bin")
    assert segment(tmp_path / f"cloud{suffix}", "--out", tmp_path / "a.label") == 0
    assert segment(tmp_path / "same.bin", "--out", tmp_path / "b.label") == 0
    assert (tmp_path / "a.label").read_bytes() == (tmp_path / "b.label").read_bytes()


def test_las_format(tmp_path):
    laspy = pytest.importorskip("laspy")
    points = np.fromfile(scan_file(tmp_path), "<f4").reshape(-1, 4)
    header = laspy.LasHeader(point_format=0, version="1.2")
    header.scales, header.offsets = [0.001] * 3, [0.0] * 3
    las = laspy.LasData(header)
    las.x, las.y, las.z = points[:, 0], points[:, 1], points[:, 2]
    las.intensity = np.zeros(len(points), np.uint16)
    las.write(tmp_path / "cloud.las")
    assert segment(tmp_path / "cloud.las", "--out", tmp_path / "las.label") == 0
    assert np.fromfile(tmp_path / "las.label", "<u4").shape == (2000,)


def bad_bin(tmp_path: Path) -> Path:
    (tmp_path / "odd.bin").write_bytes(b"\0" * 10)
    return tmp_path / "odd.bin"


def nan_bin(tmp_path: Path) -> Path:
    np.array([[0, 0, 0, 0.5], [np.nan, 1, 1, 0.5]], "<f4").tofile(tmp_path / "nan.bin")
    return tmp_path / "nan.bin"


def empty_bin(tmp_path: Path) -> Path:
    (tmp_path / "empty.bin").write_bytes(b"")
    return tmp_path / "empty.bin"


def unknown_suffix(tmp_path: Path) -> Path:
    (tmp_path / "scan.xyz").write_text("0 0 0\n")
    return tmp_path / "scan.xyz"


@pytest.mark.parametrize(
    "make, message",
    [
        (bad_bin, r"10 bytes is not a whole number of 4-float32 rows"),
        (nan_bin, r"contains NaN or inf"),
        (empty_bin, r"is empty: no points to segment"),
        (unknown_suffix, r"unknown point-cloud format '.xyz'"),
        (lambda tmp: tmp / "missing.bin", r"missing.bin: no such file or folder"),
    ],
)
def test_bad_input_writes_nothing(tmp_path, capsys, make, message):
    path = make(tmp_path)
    out = tmp_path / "out"
    assert segment(path, "--out", out) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith(f"pointengine segment: error: {path}") and "Traceback" not in "".join(err)
    assert re.search(message, err[-1])
    assert not out.exists() or files_in(out) == []


def test_unknown_model_config(tmp_path, capsys):
    config = tmp_path / "bad.yaml"
    config.write_text("architecture: pointnet\ncr: 1\ndataset: semantickitti\nvoxel_size: 0.05\nquantization: floor\n"
                      "reduce: mean\nfeatures: [x, y, z]\nfeature_scale: [1, 1, 1]\n")
    assert main(["segment", str(scan_file(tmp_path)), "--config", str(config), "--out", str(tmp_path / "o")]) == 2
    assert "`architecture` must be one of ['minkunet', 'spvcnn'], got 'pointnet'" in capsys.readouterr().err
    assert main(["segment", str(scan_file(tmp_path)), "--config", "minkunet_cr7"]) == 2
    assert "unknown model 'minkunet_cr7'" in capsys.readouterr().err


def test_arguments_are_answered_by_argparse():
    def run(*args):
        return subprocess.run([sys.executable, "-m", "pointengine", *args], capture_output=True, text=True)

    version = run("--version")
    assert version.returncode == 0 and version.stdout.strip().startswith("pointengine 0.")
    for args in (["segment"], ["segment", "x.bin", "--format", "csv"], ["frobnicate"]):
        result = run(*args)
        assert result.returncode == 2 and "Traceback" not in result.stderr
        assert result.stderr.strip().splitlines()[-1].startswith("pointengine")
