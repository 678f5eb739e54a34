"""Dataset readers and label map (checked on the real scans in ../shared/data when present) and the
segmentation metrics. The synthetic lidar is tested in test_synthetic.py."""

import math
from pathlib import Path

import numpy as np
import pytest
import torch

from pointengine.datasets import (
    SemanticKITTI,
    class_iou,
    confusion_matrix,
    load_dataset_config,
    load_scan,
    mean_iou,
    read_labels,
    read_nuscenes_points,
    read_points,
)

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
KITTI = DATA / "semantickitti"
NUSCENES = DATA / "nuscenes"

# Per-class counts after the training-id mapping, from ../shared/data/README.md (computed there with numpy).
README_COUNTS = {
    "000000": {0: 4886, 1: 4234, 8: 88, 9: 35281, 10: 3268, 11: 26360, 13: 18268, 14: 370, 15: 27123, 16: 1192,
               17: 2964, 18: 532, 19: 102},
    "000001": {0: 4799, 1: 4387, 8: 73, 9: 34101, 10: 3831, 11: 26040, 13: 19180, 14: 386, 15: 27116, 16: 1242,
               17: 2765, 18: 585, 19: 100},
    "000002": {0: 4542, 1: 4725, 8: 72, 9: 32892, 10: 4617, 11: 25524, 13: 20123, 14: 402, 15: 26987, 16: 1251,
               17: 2585, 18: 665, 19: 93},
}
README_POINTS = {"000000": 124_668, "000001": 124_605, "000002": 124_478}
README_RAW_000000 = {0: 2184, 1: 4, 10: 4234, 40: 34228, 44: 3268, 48: 26360, 50: 18268, 51: 370, 52: 1471, 60: 1053,
                     70: 27123, 71: 1192, 72: 2964, 80: 532, 81: 102, 99: 1227, 255: 88}


def needs(path: Path) -> Path:
    if not path.exists():
        pytest.skip(f"real data not present at {path}")
    return path


def counts(labels: torch.Tensor) -> dict[int, int]:
    values, n = torch.unique(labels, return_counts=True)
    return dict(zip(values.tolist(), n.tolist()))


# --- SemanticKITTI -------------------------------------------------------------------------------


@pytest.mark.parametrize("frame", sorted(README_COUNTS))
def test_semantickitti_frame_matches_readme_counts(frame):
    folder = needs(KITTI / "sequences" / "00")
    scan = load_scan(folder / "velodyne" / f"{frame}.bin", folder / "labels" / f"{frame}.label")
    assert scan.points.dtype == torch.float32 and scan.points.shape == (README_POINTS[frame], 4)
    assert scan.labels.dtype == torch.int64
    assert counts(scan.labels) == README_COUNTS[frame]
    remission = scan.points[:, 3]
    assert float(remission.min()) >= 0 and float(remission.max()) < 1


def test_semantickitti_raw_ids_and_instances():
    folder = needs(KITTI / "sequences" / "00")
    semantic, instance = read_labels(folder / "labels" / "000000.label")
    assert counts(semantic) == README_RAW_000000
    assert len(torch.unique(instance[instance > 0])) == 14  # the README: 14 instances per frame
    assert set(semantic[instance > 0].tolist()) == {10, 255}  # only things carry instance ids


def test_semantickitti_dataset_lists_frames_in_order():
    dataset = SemanticKITTI(needs(KITTI), sequences=["00"])
    assert [scan.stem for scan, _ in dataset.frames] == sorted(README_COUNTS)
    assert counts(dataset[1].labels) == README_COUNTS["000001"]
    tiny = SemanticKITTI(needs(KITTI / "mmdet3d_tiny"))
    assert counts(tiny[0].labels) == {0: 3, 13: 25, 15: 17, 16: 3, 18: 2}


def test_semantickitti_missing_sequence(tmp_path):
    with pytest.raises(ValueError, match="sequence '07': no scans in"):
        SemanticKITTI(tmp_path, sequences=["07"])


def test_scan_and_label_files_must_agree(tmp_path):
    np.zeros((3, 4), np.float32).tofile(tmp_path / "scan.bin")
    np.array([40, 40], np.uint32).tofile(tmp_path / "scan.label")
    with pytest.raises(ValueError, match="has 2 labels but .* has 3 points"):
        load_scan(tmp_path / "scan.bin", tmp_path / "scan.label")
    (tmp_path / "bad.bin").write_bytes(b"\0" * 20)
    with pytest.raises(ValueError, match="20 bytes is not a whole number of 4-float32 rows"):
        read_points(tmp_path / "bad.bin")


def test_labels_pack_semantic_and_instance(tmp_path):
    np.array([40, (7 << 16) | 10, (3 << 16) | 252], np.uint32).tofile(tmp_path / "x.label")
    semantic, instance = read_labels(tmp_path / "x.label")
    assert semantic.tolist() == [40, 10, 252] and instance.tolist() == [0, 7, 3]


# --- label map config ----------------------------------------------------------------------------


def test_config_maps_every_raw_id():
    config = load_dataset_config("semantickitti")
    assert config.num_classes == 20 and config.ignore_index == 0
    assert config.classes[1] == "car" and config.classes[9] == "road" and config.classes[19] == "traffic-sign"
    expected = {0: 0, 1: 0, 10: 1, 11: 2, 13: 5, 15: 3, 16: 5, 18: 4, 20: 5, 30: 6, 31: 7, 32: 8, 40: 9, 44: 10,
                48: 11, 49: 12, 50: 13, 51: 14, 52: 0, 60: 9, 70: 15, 71: 16, 72: 17, 80: 18, 81: 19, 99: 0,
                252: 1, 253: 7, 254: 6, 255: 8, 256: 5, 257: 5, 258: 4, 259: 5}
    assert config.learning_map == expected
    raw = torch.tensor(sorted(expected))
    assert config.map_labels(raw).tolist() == [expected[r] for r in sorted(expected)]
    # every moving class trains as its static class
    for moving, static in [(252, 10), (253, 31), (254, 30), (255, 32), (256, 16), (257, 13), (258, 18), (259, 20)]:
        assert config.learning_map[moving] == config.learning_map[static]
        assert config.raw_names[moving] == "moving-" + config.raw_names[static]
    assert len(config.colors) == 20 and len(set(config.colors)) == 20


def test_unknown_raw_label_is_an_error():
    config = load_dataset_config("semantickitti")
    with pytest.raises(ValueError, match=r"raw labels \[5, 300\] are not in the learning_map of semantickitti"):
        config.map_labels(torch.tensor([40, 5, 300, 5]))


@pytest.mark.parametrize(
    "edit, message",
    [
        ("colors: [[0, 0, 0]]", r"colors must hold one RGB triple per class \(2\), got 1"),
        ("ignore_index: 2", r"ignore_index must be a class id in \[0, 1\], got 2"),
        ("learning_map: {0: 0, 7: 1}", r"must cover the same raw ids, differing in \[5, 7\]"),
        ("learning_map: {0: 0, 5: 2}", r"training ids outside \[0, 1\]: \{5: 2\}"),
    ],
)
def test_bad_config(tmp_path, edit, message):
    fields = {"name": "name: toy", "classes": "classes: [none, thing]", "colors": "colors: [[0, 0, 0], [9, 9, 9]]",
              "ignore_index": "ignore_index: 0", "raw_names": "raw_names: {0: none, 5: thing}",
              "learning_map": "learning_map: {0: 0, 5: 1}", "learning_map_inv": "learning_map_inv: {0: 0, 1: 5}",
              "point_columns": "point_columns: [x, y, z]"}
    fields[edit.split(":")[0]] = edit
    path = tmp_path / "toy.yaml"
    path.write_text("\n".join(fields.values()))
    with pytest.raises(ValueError, match=message):
        load_dataset_config(path)


def test_missing_config():
    with pytest.raises(ValueError, match="unknown dataset 'nope': expected one of \\['nuscenes', 'semantickitti'\\]"):
        load_dataset_config("nope")


# --- nuScenes ------------------------------------------------------------------------------------


def test_nuscenes_sweep():
    name = "n015-2018-07-24-11-22-45+0800__LIDAR_TOP__1532402927647951.pcd.bin"
    path = needs(NUSCENES / "samples" / "LIDAR_TOP" / name)
    points = read_nuscenes_points(path)
    assert points.dtype == torch.float32 and points.shape == (34_688, 5)
    assert set(points[:, 4].long().unique().tolist()) == set(range(32))  # ring index of the HDL-32E


# --- metrics -------------------------------------------------------------------------------------


def test_confusion_matrix_by_hand():
    target = torch.tensor([1, 1, 1, 2, 2, 0, 0, 3])
    pred = torch.tensor([1, 1, 2, 2, 0, 1, 3, 3])
    conf = confusion_matrix(pred, target, num_classes=4)
    expected = torch.zeros(4, 4, dtype=torch.int64)
    for t, p in [(1, 1), (1, 1), (1, 2), (2, 2), (2, 0), (3, 3)]:  # the two ignored targets are dropped
        expected[t, p] += 1
    assert torch.equal(conf, expected)
    iou = class_iou(conf)
    # class 1: 2 hits, 1 miss, 0 false alarms; class 2: 1 hit, 1 miss (predicted ignore), 1 false alarm
    assert math.isnan(iou[0]) and iou[1:].tolist() == pytest.approx([2 / 3, 1 / 3, 1.0])
    assert mean_iou(conf) == pytest.approx((2 / 3 + 1 / 3 + 1.0) / 3)


def test_iou_skips_absent_classes_and_counts_false_alarms():
    target = torch.tensor([1, 1, 1, 1])
    pred = torch.tensor([1, 1, 1, 4])
    iou = class_iou(confusion_matrix(pred, target, num_classes=6))
    assert iou[1] == pytest.approx(0.75) and iou[4] == 0.0  # predicted but absent: IoU 0
    assert math.isnan(iou[2]) and math.isnan(iou[3]) and math.isnan(iou[5])  # neither: left out of the mean
    assert mean_iou(confusion_matrix(pred, target, num_classes=6)) == pytest.approx(0.375)


def test_perfect_prediction_on_real_labels():
    folder = needs(KITTI / "sequences" / "00")
    labels = load_scan(folder / "velodyne" / "000000.bin", folder / "labels" / "000000.label").labels
    conf = confusion_matrix(labels, labels, num_classes=20)
    assert int(conf.sum()) == README_POINTS["000000"] - README_COUNTS["000000"][0]
    assert mean_iou(conf) == 1.0 and int(torch.isfinite(class_iou(conf)).sum()) == 12


@pytest.mark.parametrize(
    "pred, target, message",
    [
        (torch.tensor([0, 1]), torch.tensor([0, 1, 2]), r"one shape, got \[2\] and \[3\]"),
        (torch.tensor([0.0, 1.0]), torch.tensor([0, 1]), "pred must hold integer class ids, got torch.float32"),
        (torch.tensor([0, 5]), torch.tensor([0, 1]), r"pred must be in \[0, 3\], got \[0, 5\]"),
        (torch.tensor([0, 1]), torch.tensor([-1, 1]), r"target must be in \[0, 3\], got \[-1, 1\]"),
    ],
)
def test_confusion_matrix_bad_inputs(pred, target, message):
    with pytest.raises(ValueError, match=message):
        confusion_matrix(pred, target, num_classes=4)
