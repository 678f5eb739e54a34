"""`pointengine bench` end to end: on the real SemanticKITTI scans its mIoU is the official formula's on
the .label files it saved (recomputed here with numpy from the raw files and the published learning map),
on nuScenes folders made from the real sweeps (devkit tables, a plain folder) and on synthetic ones the
devkit's formula on its saved .bin files; two processes give exactly one process's confusion matrix and
predictions; the latency histograms; bad datasets named or, with --skip-bad, skipped and reported."""

import json
import math
import shutil
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import safetensors.torch
import torch
import yaml

from pointengine import Segmenter
from pointengine.cli import main
from pointengine.datasets import load_dataset_config, read_labels
from pointengine.datasets.synthetic import write_synthetic_nuscenes
from pointengine.evaluate import BenchSettings, run_benchmark
from pointengine.evaluate.timing import BINS_PER_DECADE, StageTimes

pytestmark = pytest.mark.usefixtures("one_thread")

DATA = Path(__file__).resolve().parents[1] / ".." / "shared" / "data"
NUSCENES_SAMPLE = "n015-2018-08-02-17-16-37+0800__LIDAR_TOP__1533201470948018.pcd.bin"
NUSCENES_TOKEN = "5f6c1e0a0c3b444b97e78d2aa3fa34d2"  # its lidarseg file's name: the sample_data token
NUSCENES_SWEEP = "n015-2018-07-24-11-22-45+0800__LIDAR_TOP__1532402927647951.pcd.bin"
TINY_NUSCENES_CONFIG = """architecture: minkunet
cr: 0.125
dataset: nuscenes
voxel_size: 0.5
quantization: round_shift
reduce: first
features: [x, y, z, intensity]
feature_scale: [1.0, 1.0, 1.0, 0.00392156862745098]
"""


def needs(path: Path) -> Path:
    if not path.exists():
        pytest.skip(f"{path} is not here (../shared/data)")
    return path


def bench(*args) -> int:
    return main(["bench", "--threads", "1", *map(str, args)])


def official_kitti(label_files, prediction_files, learning_map: dict) -> tuple[float, np.ndarray, float]:
    """semantic-kitti-api's evaluate_semantics.py formula, written out again: (mIoU, IoU per training
    class, accuracy) from raw .label files."""
    lookup = np.zeros(max(learning_map) + 100, dtype=np.int64)
    lookup[list(learning_map)] = list(learning_map.values())
    classes = max(learning_map.values()) + 1
    confusion = np.zeros((classes, classes), dtype=np.int64)  # [prediction, label]
    for label_file, prediction_file in zip(label_files, prediction_files):
        label = lookup[np.fromfile(label_file, dtype=np.uint32) & 0xFFFF]
        prediction = lookup[np.fromfile(prediction_file, dtype=np.uint32) & 0xFFFF]
        np.add.at(confusion, (prediction, label), 1)
    confusion[:, 0] = 0
    hits = np.diag(confusion)
    false_alarms, misses = confusion.sum(1) - hits, confusion.sum(0) - hits
    iou = hits / (hits + false_alarms + misses + 1e-15)
    accuracy = hits.sum() / (hits[1:].sum() + false_alarms[1:].sum() + 1e-15)
    return float(iou[1:].mean()), iou, float(accuracy)


def devkit_nuscenes(label_files, prediction_files, learning_map: dict) -> float:
    """nuscenes-devkit's lidarseg mIoU written out again: the ground truth mapped to the 16 classes, the
    predictions (1-16) as they are, the ignored row and column zeroed, unions in float32, a nanmean."""
    lookup = np.array([learning_map[i] for i in range(32)])
    confusion = np.zeros((17, 17), dtype=np.int64)  # [label, prediction]
    for label_file, prediction_file in zip(label_files, prediction_files):
        label = lookup[np.fromfile(label_file, dtype=np.uint8)]
        prediction = np.fromfile(prediction_file, dtype=np.uint8).astype(np.int64)
        assert prediction.min() >= 1 and prediction.max() <= 16 and prediction.size == label.size
        confusion += np.bincount(17 * label + prediction, minlength=17 * 17).reshape(17, 17)
    confusion[0, :] = 0
    confusion[:, 0] = 0
    hits = np.diag(confusion)
    with np.errstate(divide="ignore", invalid="ignore"):
        iou = hits / (confusion.sum(1) + confusion.sum(0) - hits).astype(np.float32)
    return float(np.nanmean(iou))


def test_real_scans_miou_is_the_official_one_of_the_saved_labels(tmp_path, capsys):
    root = needs(DATA / "semantickitti")
    official_map = yaml.safe_load(needs(DATA / "semantic-kitti.yaml").read_text())["learning_map"]
    out = tmp_path / "submission"
    assert bench("--dataset", "semantickitti", "--root", root, "--split", "00", "--save-predictions", out,
                 "--json", tmp_path / "result.json") == 0
    printed = capsys.readouterr().out
    result = json.loads((tmp_path / "result.json").read_text())
    assert (result["scans"], result["labelled_scans"], result["points"]) == (3, 3, 124_668 + 124_605 + 124_478)
    labels = sorted((root / "sequences" / "00" / "labels").glob("*.label"))
    predictions = sorted((out / "sequences" / "00" / "predictions").glob("*.label"))
    assert [p.name for p in predictions] == [p.name for p in labels]
    miou, iou, accuracy = official_kitti(labels, predictions, official_map)
    assert result["miou"] == pytest.approx(miou, rel=1e-12, abs=1e-15)
    assert list(result["class_iou"].values())[1:] == pytest.approx(iou[1:].tolist(), rel=1e-12, abs=1e-15)
    assert result["accuracy"] == pytest.approx(accuracy, rel=1e-12)
    assert result["trained"] and result["model"] == "demo" and 0.1 < miou < 1  # the demo model, not chance
    for stage in ("load", "voxelize", "model", "map", "metrics", "total"):
        latency = result["latency_ms"][stage]
        assert latency["count"] == 3 and 0 < latency["p50"] <= latency["p90"] <= latency["p99"]
    assert result["scans_per_second"] > 0 and result["peak_rss_bytes"] > 0 and result["outside_model_percent"] > 0
    assert f"**{100 * miou:.1f}**" in printed and "| model |" in printed and "scans/s" in printed
    assert (tmp_path / "result.md").read_text() in printed


@pytest.fixture
def nuscenes_config(tmp_path):
    path = tmp_path / "tiny_nuscenes.yaml"
    path.write_text(TINY_NUSCENES_CONFIG)
    return path


def test_real_nuscenes_sample_in_devkit_tables(tmp_path, nuscenes_config):
    """The labelled 40-point sample under tables written here by hand with the devkit's fields."""
    source = needs(DATA / "nuscenes" / "mmdet3d_tiny")
    official_map = yaml.safe_load(needs(DATA / "nuscenes" / "nuscenes-lidarseg-label-mapping.yaml").read_text())
    root = tmp_path / "nuscenes"
    scan, label = f"samples/LIDAR_TOP/{NUSCENES_SAMPLE}", f"lidarseg/v1.0-trainval/{NUSCENES_TOKEN}_lidarseg.bin"
    for name in (scan, label):
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(source / name, root / name)
    tables = {
        "scene": [{"token": "s0", "name": "scene-0001", "nbr_samples": 1, "first_sample_token": "a0",
                   "last_sample_token": "a0"}],
        "sample": [{"token": "a0", "timestamp": 1533201470948018, "scene_token": "s0"}],
        "sample_data": [{"token": NUSCENES_TOKEN, "sample_token": "a0", "timestamp": 1533201470948018,
                         "fileformat": "pcd", "is_key_frame": True, "filename": scan},
                        {"token": "sweep", "sample_token": "a0", "timestamp": 1533201470998018,
                         "fileformat": "pcd", "is_key_frame": False, "filename": "sweeps/LIDAR_TOP/x.pcd.bin"}],
        "lidarseg": [{"token": NUSCENES_TOKEN, "sample_data_token": NUSCENES_TOKEN, "filename": label}],
    }
    (root / "v1.0-trainval").mkdir()
    for name, records in tables.items():
        (root / "v1.0-trainval" / f"{name}.json").write_text(json.dumps(records))
    out = tmp_path / "submission"
    assert bench("--dataset", "nuscenes", "--root", root, "--split", "scene-0001", "--config", nuscenes_config,
                 "--save-predictions", out, "--json", tmp_path / "result.json") == 0
    result = json.loads((tmp_path / "result.json").read_text())
    assert (result["scans"], result["labelled_scans"], result["points"]) == (1, 1, 40)
    prediction = out / "lidarseg" / "custom" / f"{NUSCENES_TOKEN}_lidarseg.bin"
    miou = devkit_nuscenes([root / label], [prediction], official_map["learning_map"])
    assert result["miou"] == pytest.approx(miou, rel=1e-12)
    assert json.loads((out / "custom" / "submission.json").read_text())["meta"]["use_lidar"] is True


def test_real_nuscenes_sweep_in_a_plain_folder(tmp_path, nuscenes_config, capsys):
    """The full unlabelled 34,688-point sweep: latency and throughput, no scores."""
    sweep = needs(DATA / "nuscenes" / "samples" / "LIDAR_TOP" / NUSCENES_SWEEP)
    root = tmp_path / "plain"
    root.mkdir()
    (root / NUSCENES_SWEEP).symlink_to(sweep.resolve())
    assert bench("--dataset", "nuscenes", "--root", root, "--split", "all", "--config", nuscenes_config,
                 "--json", tmp_path / "result.json") == 0
    result = json.loads((tmp_path / "result.json").read_text())
    assert (result["scans"], result["labelled_scans"], result["points"]) == (1, 0, 34_688)
    assert result["miou"] is None and result["latency_ms"]["model"]["count"] == 1
    assert "(untrained weights)" in capsys.readouterr().out


def test_synthetic_nuscenes_submission(tmp_path, nuscenes_config):
    root = write_synthetic_nuscenes(tmp_path / "data", {"scene-0001": 2}, seed=1, beams=16, azimuth_steps=256)
    out = tmp_path / "submission"
    assert bench("--dataset", "nuscenes", "--root", root, "--split", "all", "--config", nuscenes_config,
                 "--save-predictions", out, "--json", tmp_path / "result.json") == 0
    result = json.loads((tmp_path / "result.json").read_text())
    tables = json.loads((root / "v1.0-trainval" / "lidarseg.json").read_text())
    labels = [root / record["filename"] for record in tables]
    predictions = [out / "lidarseg" / "all" / f"{record['sample_data_token']}_lidarseg.bin" for record in tables]
    learning_map = yaml.safe_load((Path(__file__).resolve().parents[1] / "datasets" / "nuscenes.yaml").read_text())
    assert result["miou"] == pytest.approx(devkit_nuscenes(labels, predictions, learning_map["learning_map"]), rel=1e-12)


def _bench_rank(rank: int, world_size: int, init_file: Path, settings: BenchSettings, out: Path) -> None:
    torch.distributed.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world_size)
    torch.set_num_threads(1)
    try:
        result = run_benchmark(settings)
        if rank == 0:
            counts = torch.tensor([result.scans, result.labelled_scans, result.points, result.processes])
            safetensors.torch.save_file({"confusion": result.confusion, "counts": counts,
                                         "histograms": result.times.counts}, str(out))
    finally:
        torch.distributed.destroy_process_group()


def test_two_processes_give_one_process_confusion_matrix(tiny_dataset, tiny_config, tmp_path):
    """As torchrun --nproc_per_node 2 runs it (gloo, a process group per process): every scan once, the
    confusion matrix summed exactly, the latency histograms of all scans, the same predictions."""
    settings = BenchSettings("semantickitti", tiny_dataset, ("all",), config=tiny_config(), progress=False,
                             save_predictions=tmp_path / "two")
    torch.multiprocessing.spawn(_bench_rank, args=(2, tmp_path / "rendezvous", settings, tmp_path / "two.safetensors"),
                                nprocs=2)
    two = safetensors.torch.load_file(str(tmp_path / "two.safetensors"))
    one = run_benchmark(replace(settings, save_predictions=tmp_path / "one"))
    assert int(one.confusion.sum()) > 0 and torch.equal(two["confusion"], one.confusion)
    assert two["counts"].tolist() == [one.scans, one.labelled_scans, one.points, 2] == [3, 3, one.points, 2]
    assert torch.equal(two["histograms"].sum(1), one.times.counts.sum(1))  # each stage of every scan
    files = sorted(p.relative_to(tmp_path / "one") for p in (tmp_path / "one").rglob("*.label"))
    assert len(files) == 3
    for name in files:
        assert (tmp_path / "two" / name).read_bytes() == (tmp_path / "one" / name).read_bytes()


def test_views_give_segmenters_labels(tiny_dataset, tmp_path):
    """--views 2 with the trained demo model: the saved predictions are Segmenter(views=2)'s labels of
    each scan (which differ from one view's on 8-10 % of these points)."""
    run_benchmark(BenchSettings("semantickitti", tiny_dataset, ("all",), config="demo", progress=False,
                                save_predictions=tmp_path / "pred", views=2))
    seg, plain = Segmenter("demo", views=2), Segmenter("demo")
    scans = sorted(tiny_dataset.rglob("velodyne/*.bin"))
    saved = sorted((tmp_path / "pred").rglob("*.label"))
    assert len(scans) == len(saved) == 3
    for scan, prediction in zip(scans, saved):
        assert (scan.parent.parent.name, scan.stem) == (prediction.parent.parent.name, prediction.stem)
        raw, _ = read_labels(prediction)
        points = np.fromfile(scan, "<f4").reshape(-1, 4)
        expected = seg(points)
        assert torch.equal(load_dataset_config("semantickitti").map_labels(raw), expected)
        assert not torch.equal(expected, plain(points))


def test_latency_percentiles_from_the_histogram():
    """Nearest-rank percentiles, each within half a bin (0.6 %) of numpy's; means exact."""
    latencies = np.random.default_rng(0).lognormal(np.log(0.05), 0.7, 997)
    times = StageTimes()
    for value in latencies:
        times.add("model", float(value))
    half_bin = 10 ** (0.5 / BINS_PER_DECADE)
    for q in (50, 90, 99):
        exact = float(np.percentile(latencies, q, method="inverted_cdf"))
        assert exact / half_bin <= times.percentile("model", q) <= exact * half_bin
    assert times.mean("model") == pytest.approx(latencies.mean(), rel=1e-12) and times.count("model") == 997
    assert math.isnan(times.percentile("load", 50)) and math.isnan(times.mean("load"))


# --- bad datasets ------------------------------------------------------------------------------------


@pytest.fixture
def broken(tiny_dataset, tmp_path):
    """A copy of the tiny dataset to break, and its sequence 00 folder."""
    root = tmp_path / "broken"
    shutil.copytree(tiny_dataset, root)
    return root, root / "sequences" / "00"


def refused(root, config, capsys, match: str, *extra) -> str:
    code = bench("--dataset", "semantickitti", "--root", root, "--split", "00", "01", "--config", config, *extra)
    err = capsys.readouterr().err
    assert code == 2 and err.startswith("pointengine bench: error: ") and err.count("\n") == 1, err
    assert match in err, err
    return err


def skipped(root, config, capsys, path: Path, scans: int) -> None:
    """With --skip-bad the run goes on without the scan (or folder) `path`, and says so."""
    code = bench("--dataset", "semantickitti", "--root", root, "--split", "00", "01", "--config", config, "--skip-bad")
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert f"skipped {path}: " in captured.err and "1 file skipped" in captured.out
    assert f": {scans} scans" in captured.out


def test_missing_label_file(broken, tiny_config, capsys):
    root, folder = broken
    label = folder / "labels" / "000001.label"
    label.unlink()
    refused(root, tiny_config(), capsys, f"{label}: missing label file for scan")
    skipped(root, tiny_config(), capsys, folder / "velodyne" / "000001.bin", scans=2)


def test_label_count_differs_from_the_scan(broken, tiny_config, capsys):
    root, folder = broken
    label = folder / "labels" / "000000.label"
    label.write_bytes(label.read_bytes()[:-8])
    points = (folder / "velodyne" / "000000.bin").stat().st_size // 16
    refused(root, tiny_config(), capsys, f"{label}: {points - 2} labels but {folder / 'velodyne' / '000000.bin'}")
    skipped(root, tiny_config(), capsys, folder / "velodyne" / "000000.bin", scans=2)


def test_unknown_class_id(broken, tiny_config, capsys):
    root, folder = broken
    label = folder / "labels" / "000001.label"
    packed = np.fromfile(label, "<u4")
    packed[7] = 33  # not a SemanticKITTI raw id
    packed.tofile(label)
    refused(root, tiny_config(), capsys, f"{label}: raw labels [33] are not in the learning_map")
    skipped(root, tiny_config(), capsys, folder / "velodyne" / "000001.bin", scans=2)


def test_truncated_scan(broken, tiny_config, capsys):
    root, folder = broken
    scan = folder / "velodyne" / "000000.bin"
    scan.write_bytes(scan.read_bytes()[:-6])
    refused(root, tiny_config(), capsys, f"{scan}: {scan.stat().st_size} bytes is not a whole number of 16-byte points")
    skipped(root, tiny_config(), capsys, scan, scans=2)


def test_empty_folders(broken, tiny_config, capsys):
    root, folder = broken
    for scan in (root / "sequences" / "01" / "velodyne").iterdir():
        scan.unlink()
    refused(root, tiny_config(), capsys, f"{root / 'sequences' / '01' / 'velodyne'}: no scans (*.bin)")
    skipped(root, tiny_config(), capsys, root / "sequences" / "01" / "velodyne", scans=2)
    code = bench("--dataset", "semantickitti", "--root", root, "--split", "01", "--config", tiny_config(), "--skip-bad")
    assert code == 2 and "no scans to benchmark in split 01" in capsys.readouterr().err


def test_model_of_the_other_dataset(tiny_dataset, capsys):
    code = bench("--dataset", "nuscenes", "--root", tiny_dataset, "--split", "all", "--config", "demo")
    err = capsys.readouterr().err
    assert code == 2 and "model 'demo' reads semantickitti scans" in err and "--config minkunet_cr0.5_nuscenes" in err


def test_bad_points_found_in_a_worker_process(broken, tiny_config, capsys):
    """A scan that reads but cannot be voxelized (a NaN), met by a DataLoader worker: the same one-line
    error naming the file, or a reported skip."""
    root, folder = broken
    scan = folder / "velodyne" / "000001.bin"
    points = np.fromfile(scan, "<f4")
    points[5] = np.nan
    points.tofile(scan)
    refused(root, tiny_config(), capsys, f"{scan}: points contains NaN or inf values", "--workers", "1")
    skipped(root, tiny_config(), capsys, scan, scans=2)
