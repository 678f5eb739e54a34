"""The benchmark's readers: official splits from the config, the frames of a split in both layouts (the
nuScenes devkit tables and a plain folder, written by the synthetic nuScenes writer), the torch Dataset
and its collate function (in a worker process too), and bad frames named or skipped."""

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from pointengine.datasets import load_dataset_config, nuscenes, semantickitti
from pointengine.datasets.frames import Frame, check_frame
from pointengine.datasets.synthetic import NUSCENES_RAW, frame_seed, generate_scan, hdl64_elevations, write_synthetic_nuscenes
from pointengine.evaluate import ScanCollate, SplitDataset
from pointengine.models import load_model_config
from pointengine.segment import voxelize_scans

DATA = Path(__file__).resolve().parents[1] / ".." / "shared" / "data"
SMALL = dict(beams=8, azimuth_steps=128)


@pytest.fixture(scope="module")
def synthetic_nuscenes(tmp_path_factory):
    root = tmp_path_factory.mktemp("nuscenes")
    return write_synthetic_nuscenes(root, {"scene-0002": 1, "scene-0001": 2}, seed=5, azimuth_steps=128)  # 32 beams


def test_official_kitti_splits_in_ours_and_in_the_published_file():
    ours = load_dataset_config("semantickitti")
    assert ours.splits["val"] == ("08",) and ours.splits["train"] == ("00", "01", "02", "03", "04", "05", "06",
                                                                        "07", "09", "10")
    assert ours.splits["test"] == tuple(f"{n}" for n in range(11, 22))
    published = DATA / "semantic-kitti.yaml"
    if not published.exists():
        pytest.skip(f"{published} is not here (../shared/data)")
    assert load_dataset_config(published).splits == ours.splits


def test_kitti_split_names(tiny_dataset):
    config = load_dataset_config("semantickitti")
    assert semantickitti.split_sequences(tiny_dataset, ["val"], config) == ("08",)
    assert semantickitti.split_sequences(tiny_dataset, ["all"], config) == ("00", "01")
    assert semantickitti.split_sequences(tiny_dataset, ["01", "00"], config) == ("01", "00")
    with pytest.raises(ValueError, match=r"split must be one of \['test', 'train', 'val'\].*got valid"):
        semantickitti.split_sequences(tiny_dataset, ["valid"], config)


def test_kitti_frames_labelled_or_not(tiny_dataset, tmp_path):
    found = semantickitti.find_frames(tiny_dataset, ["00", "01"])
    assert [f.name for f in found.frames] == ["00/000000", "00/000001", "01/000000"]
    assert all(f.label is not None and f.label.is_file() for f in found.frames) and not found.skipped
    (tmp_path / "sequences" / "11" / "velodyne").mkdir(parents=True)  # a test sequence: no labels/ folder
    np.zeros((5, 4), np.float32).tofile(tmp_path / "sequences" / "11" / "velodyne" / "000000.bin")
    test = semantickitti.find_frames(tmp_path, ["11"]).frames
    assert test == [Frame("11/000000", tmp_path / "sequences" / "11" / "velodyne" / "000000.bin", None)]
    assert semantickitti.prediction_path("out", test[0]) == Path("out/sequences/11/predictions/000000.label")


def test_synthetic_nuscenes_tables_read_back(synthetic_nuscenes):
    """Frames in scene then time order, each scan the generated one turned into the nuScenes frame, each
    label the raw lidarseg id of its generated class."""
    found = nuscenes.find_frames(synthetic_nuscenes, ["all"])
    assert not found.skipped and len(found.frames) == 3
    tables = {name: json.loads((synthetic_nuscenes / "v1.0-trainval" / f"{name}.json").read_text())
              for name in ("scene", "sample", "sample_data", "lidarseg")}
    assert sorted(s["name"] for s in tables["scene"]) == ["scene-0001", "scene-0002"]
    elevations = hdl64_elevations(32, calibrated=True)
    config = load_dataset_config("nuscenes")
    for frame, (scene, index) in zip(found.frames, [("0001", 0), ("0001", 1), ("0002", 0)]):
        expected = generate_scan(seed=frame_seed(5, scene, index), beams=32, azimuth_steps=128)
        points = nuscenes.read_nuscenes_points(frame.scan)
        x, y, z = expected.points[:, 0], expected.points[:, 1], expected.points[:, 2]
        assert torch.equal(points[:, 0], -y) and torch.equal(points[:, 1], x) and torch.equal(points[:, 2], z)
        assert torch.equal(points[:, 3], torch.round(expected.points[:, 3] * 255))
        xd, yd, zd = (c.double().numpy() for c in (x, y, z))
        elevation = np.arctan2(zd, np.hypot(xd, yd))
        ring = points[:, 4].long().numpy()  # the beam of each point: the nearest beam elevation, within 0.05 deg
        assert np.abs(elevation - elevations[ring]).max() < np.radians(0.05) and ring.max() <= 31
        raw = nuscenes.read_lidarseg(frame.label)
        assert torch.equal(raw, torch.from_numpy(NUSCENES_RAW[expected.labels.numpy()]).long())
        assert frame.label.name == f"{frame.name}_lidarseg.bin"
        config.map_labels(raw)  # every id is a nuScenes raw id
    assert nuscenes.find_frames(synthetic_nuscenes, ["scene-0002"]).frames == found.frames[2:]


def test_nuscenes_named_split_needs_the_devkit(synthetic_nuscenes):
    if importlib.util.find_spec("nuscenes") is not None:
        pytest.skip("nuscenes-devkit is installed")
    with pytest.raises(ValueError, match="listed by nuscenes-devkit: pip install nuscenes-devkit"):
        nuscenes.find_frames(synthetic_nuscenes, ["val"])
    with pytest.raises(ValueError, match=r"no scenes named \['scene-9999'\]"):
        nuscenes.find_frames(synthetic_nuscenes, ["scene-9999"])
    with pytest.raises(ValueError, match="no tables of nuScenes version 'v1.0-mini'"):
        nuscenes.find_frames(synthetic_nuscenes, ["all"], version="v1.0-mini")


def test_nuscenes_plain_folder(tmp_path):
    root = write_synthetic_nuscenes(tmp_path, {"scene-0003": 2}, tables=False, **SMALL)
    found = nuscenes.find_frames(root, ["all"])
    assert [f.name for f in found.frames] == sorted(p.name.removesuffix(".pcd.bin")
                                                    for p in (root / "samples" / "LIDAR_TOP").iterdir())
    assert all(f.label.name == f"{f.name}_lidarseg.bin" for f in found.frames)
    with pytest.raises(ValueError, match="a plain folder of scans is benchmarked whole with --split all"):
        nuscenes.find_frames(root, ["val"])
    prediction = nuscenes.prediction_path("out", found.frames[0], ["all"])
    assert prediction == Path("out/lidarseg/all") / f"{found.frames[0].name}_lidarseg.bin"


@pytest.mark.parametrize("workers", [0, 1])
def test_collate_batches_scans_as_voxelize_scans(tiny_dataset, tiny_config, workers):
    """Two scans per batch, read and voxelized in this process or in a worker process: the SparseTensor
    of voxelize_scans over both, and each scan's labels."""
    config = load_model_config(tiny_config())
    frames = semantickitti.find_frames(tiny_dataset, ["00", "01"]).frames
    dataset = SplitDataset(frames, semantickitti.FORMAT, config.dataset)
    loader = DataLoader(dataset, batch_size=2, num_workers=workers, collate_fn=ScanCollate(config))
    batches = list(loader)
    assert [len(b.scans) for b in batches] == [2, 1] and all(b.voxelize_seconds > 0 for b in batches)
    first = batches[0]
    scans = [dataset[0].scan, dataset[1].scan]
    expected = voxelize_scans(config, [s.points for s in scans])
    assert torch.equal(first.voxels.tensor.coords, expected.tensor.coords)
    assert torch.equal(first.voxels.tensor.feats, expected.tensor.feats)
    assert torch.equal(first.voxels.inverse, expected.inverse) and first.voxels.point_counts == expected.point_counts
    assert set(first.voxels.tensor.coords[:, 0].tolist()) == {0, 1}
    for item, scan in zip(first.scans, scans):
        assert torch.equal(item.scan.labels, scan.labels) and item.seconds > 0


def test_sizes_checked_before_reading(tmp_path):
    scan, label = tmp_path / "a.bin", tmp_path / "a.label"
    np.zeros((4, 4), np.float32).tofile(scan)
    np.zeros(3, np.uint32).tofile(label)
    with pytest.raises(ValueError, match=f"{label}: 3 labels but {scan} has 4 points"):
        check_frame(Frame("00/a", scan, label), semantickitti.FORMAT)
    scan.write_bytes(scan.read_bytes()[:-3])
    with pytest.raises(ValueError, match=f"{scan}: 61 bytes is not a whole number of 16-byte points"):
        check_frame(Frame("00/a", scan, label), semantickitti.FORMAT)
    scan.write_bytes(b"")
    with pytest.raises(ValueError, match=f"{scan}: empty scan file"):
        check_frame(Frame("00/a", scan, None), semantickitti.FORMAT)
