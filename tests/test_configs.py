"""Model zoo configs and dataset configs: every zoo entry builds, the published label-map layouts read
as ours, the inverse map sends each class back to a raw id of that class, bad configs name the problem."""

from pathlib import Path

import pytest
import torch
import yaml

from pointengine.datasets import load_dataset_config
from pointengine.models import available, build_model, load_model_config

DATA = Path(__file__).resolve().parents[1] / ".." / "shared" / "data"
ZOO_DATASETS = {"semantickitti": 19, "nuscenes": 16}


def needs(path: Path) -> Path:
    if not path.exists():
        pytest.skip(f"{path} is not here (../shared/data)")
    return path


def test_the_zoo_has_every_width_for_both_datasets():
    names = set(available())
    for arch in ("minkunet", "spvcnn"):
        for cr in ("0.5", "0.64", "1.0"):
            assert {f"{arch}_cr{cr}", f"{arch}_cr{cr}_nuscenes"} <= names
    assert "demo" in names


@pytest.mark.parametrize("name", available())
def test_every_zoo_config_builds_its_model(name):
    config = load_model_config(name)
    model = build_model(config)
    assert type(model).__name__.lower() == config.architecture
    assert model.classifier.out_features == ZOO_DATASETS[config.dataset.name] == config.num_classes
    assert model.stem[0][0].in_channels == config.in_channels == len(config.features)
    assert all(config.dataset.point_columns[c] == f for c, f in zip(config.feature_columns, config.features))
    # The published models' voxel sizes; our demo model (trained here on synthetic scans) uses 0.1 m.
    assert config.voxel_size == (0.05 if config.dataset.name == "semantickitti" and name != "demo" else 0.1)


def test_spvnas_pipeline_of_the_semantickitti_zoo():
    config = load_model_config("spvcnn_cr0.5")
    assert (config.quantization, config.reduce, config.features) == ("round_shift", "first", ("x", "y", "z", "remission"))
    nuscenes = load_model_config("minkunet_cr1.0_nuscenes")
    assert nuscenes.dataset.point_columns == ("x", "y", "z", "intensity", "ring")
    assert nuscenes.feature_scale == (1.0, 1.0, 1.0, 1 / 255)


def test_config_round_trips_through_a_dict():
    from pointengine.models.config import model_config_from_dict

    config = load_model_config("minkunet_cr0.64_nuscenes")
    again = model_config_from_dict(config.to_dict(), "copy", "test")
    assert again == config


@pytest.mark.parametrize(
    "edit, message",
    [
        ({"architecture": "pointnet"}, r"`architecture` must be one of \['minkunet', 'spvcnn'\], got 'pointnet'"),
        ({"features": ["x", "y", "z", "colour"], "feature_scale": [1, 1, 1, 1]}, r"features \['colour'\] are not columns"),
        ({"feature_scale": [1.0, 1.0]}, r"feature_scale needs one factor per feature \(4\), got 2"),
        ({"quantization": "ceil"}, r"quantization must be one of \('floor', 'round_shift'\), got 'ceil'"),
        ({"reduce": "sum"}, r"reduce must be one of"),
        ({"voxel_size": 0}, r"voxel_size must be > 0, got 0"),
        ({"cr": "wide"}, r"cr must hold finite numbers, got 'wide'"),
        ({"dataset": "kitti360"}, r"unknown dataset 'kitti360'"),
    ],
)
def test_bad_model_config(tmp_path, edit, message):
    fields = {"architecture": "minkunet", "cr": 0.5, "dataset": "semantickitti", "voxel_size": 0.05,
              "quantization": "floor", "reduce": "mean", "features": ["x", "y", "z", "remission"],
              "feature_scale": [1, 1, 1, 1], **edit}
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(fields))
    with pytest.raises(ValueError, match=message):
        build_model(path)


def test_missing_fields_are_listed(tmp_path):
    path = tmp_path / "old.yaml"
    path.write_text("model: minkunet\nin_channels: 4\nnum_classes: 19\ncr: 0.5\n")
    with pytest.raises(ValueError, match=r"model config is missing \['architecture', 'dataset', 'voxel_size'"):
        build_model(path)


# --- dataset configs -----------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["semantickitti", "nuscenes"])
def test_inverse_map_returns_a_raw_id_of_each_class(name):
    config = load_dataset_config(name)
    train = torch.arange(config.num_classes)
    assert torch.equal(config.map_labels(config.raw_labels(train)), train)


def test_semantic_kitti_api_file_reads_as_ours():
    published = load_dataset_config(needs(DATA / "semantic-kitti.yaml"))
    ours = load_dataset_config("semantickitti")
    assert published.learning_map == ours.learning_map and published.learning_map_inv == ours.learning_map_inv
    assert published.classes == ours.classes and published.raw_names == ours.raw_names
    assert published.ignore_index == 0 and published.point_columns == ("x", "y", "z", "remission")
    # colours are published in BGR: car (raw 10) is [245, 150, 100]
    assert published.colors[1] == (100, 150, 245)


def test_nuscenes_lidarseg_mapping_reads_as_ours():
    published = load_dataset_config(needs(DATA / "nuscenes" / "nuscenes-lidarseg-label-mapping.yaml"))
    ours = load_dataset_config("nuscenes")
    assert published.learning_map == ours.learning_map and published.classes == ours.classes
    assert published.raw_names == ours.raw_names and published.num_classes == 17
    assert len(set(published.colors)) == 17  # no colours are published: a palette of distinct ones
    train = torch.arange(17)
    assert torch.equal(published.map_labels(published.raw_labels(train)), train)


def test_published_layouts_without_the_data_folder(tmp_path):
    """The two published layouts, written here by hand in miniature, so the readers run on a fresh machine."""
    kitti = tmp_path / "mini-kitti.yaml"
    kitti.write_text(
        "labels: {0: unlabeled, 10: car, 252: moving-car}\n"
        "color_map: {0: [0, 0, 0], 10: [245, 150, 100], 252: [245, 150, 100]}\n"
        "learning_map: {0: 0, 10: 1, 252: 1}\nlearning_map_inv: {0: 0, 1: 10}\n"
        "learning_ignore: {0: true, 1: false}\n"
    )
    config = load_dataset_config(kitti)
    assert config.classes == ("unlabeled", "car") and config.colors == ((0, 0, 0), (100, 150, 245))
    assert config.name == "mini-kitti" and config.raw_labels(torch.tensor([1, 0])).tolist() == [10, 0]
    lidarseg = tmp_path / "mini-nuscenes.yaml"
    lidarseg.write_text(
        "labels: {0: noise, 1: animal, 17: vehicle.car, 24: flat.driveable_surface}\n"
        "labels_16: {0: noise, 1: car, 2: driveable_surface}\nlearning_map: {0: 0, 1: 0, 17: 1, 24: 2}\n"
    )
    config = load_dataset_config(lidarseg)
    assert config.classes == ("noise", "car", "driveable_surface")
    assert config.learning_map_inv == {0: 0, 1: 17, 2: 24} and config.point_columns[3] == "intensity"


@pytest.mark.parametrize(
    "text, message",
    [
        ("just a string", r"a dataset config must be a mapping, got str"),
        ("name: x\nclasses: [a]\n", r"not a dataset config: missing \['colors', 'ignore_index'"),
        ("labels: {0: a}\ncolor_map: {0: [0, 0, 0]}\nlearning_map: {0: 0}\nlearning_map_inv: {0: 0}\n"
         "learning_ignore: {0: false}\n", r"learning_ignore must mark exactly one ignored training id, got \[\]"),
        ("labels: {0: a}\ncolor_map: {0: [0, 0, 0]}\nlearning_map: {0: 0, 5: 1}\nlearning_map_inv: {0: 0, 1: 5}\n",
         r"learning_map_inv names raw ids without a label or colour: \[5\]"),
        ("{unclosed", r"not valid YAML"),
    ],
)
def test_bad_dataset_files(tmp_path, text, message):
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(ValueError, match=message):
        load_dataset_config(path)


def test_inverse_map_must_map_back(tmp_path):
    path = tmp_path / "toy.yaml"
    path.write_text("name: toy\nclasses: [none, thing]\ncolors: [[0, 0, 0], [9, 9, 9]]\nignore_index: 0\n"
                    "raw_names: {0: none, 5: thing}\nlearning_map: {0: 0, 5: 1}\nlearning_map_inv: {0: 0, 1: 0}\n"
                    "point_columns: [x, y, z]\n")
    with pytest.raises(ValueError, match=r"learning_map_inv sends training ids to raw ids that do not map back: \{1: 0\}"):
        load_dataset_config(path)
