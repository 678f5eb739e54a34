"""`pointengine adjust-logits` and pointengine.train.logit_adjustment: the classifier's bias moves by
tau x log(class share) of the labelled points (counted here from the label files with numpy), every
other tensor and the metadata stay as they were, tau 0 changes nothing, and bad input is refused."""

import math

import numpy as np
import pytest
import torch
from safetensors import safe_open

from pointengine.cli import main
from pointengine.models import build_model, load_model_config
from pointengine.models.checkpoint import save_checkpoint
from pointengine.train.logit_adjustment import logit_shift, shift_classifier_bias

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture
def checkpoint(tiny_config, tmp_path):
    """Untrained (seeded) weights of the tiny MinkUNet, saved as `pointengine train` saves them."""
    config = load_model_config(tiny_config())
    torch.manual_seed(5)
    model = build_model(config)
    with torch.no_grad():
        model.classifier.bias.normal_()
    return save_checkpoint(model, tmp_path / "model.safetensors", config.to_dict()), config


def tensors_and_metadata(path) -> tuple[dict, dict]:
    with safe_open(str(path), "pt") as file:
        return {name: file.get_tensor(name) for name in file.keys()}, file.metadata()


def label_counts(root, sequences, dataset) -> np.ndarray:
    """Points of each training id in the sequences' label files (lower 16 bits: the raw semantic id)."""
    counts = np.zeros(dataset.num_classes, dtype=np.int64)
    for sequence in sequences:
        for path in sorted((root / "sequences" / sequence / "labels").glob("*.label")):
            raw = np.fromfile(path, dtype=np.uint32) & 0xFFFF
            for raw_id, n in zip(*np.unique(raw, return_counts=True)):
                counts[dataset.learning_map[int(raw_id)]] += n
    return counts


def test_shift_is_tau_times_the_log_of_each_share():
    dataset = load_model_config("demo").dataset
    points = torch.zeros(dataset.num_classes, dtype=torch.int64)
    points[1], points[9], points[13] = 300, 6000, 2999  # the rest hold none
    shift = logit_shift(points, 0.4, dataset)
    assert shift.dtype == torch.float32 and shift.shape == (len(dataset.predicted_classes),)
    total = 300 + 6000 + 2999 + len(dataset.predicted_classes)  # one point more in every class
    for column, class_id in enumerate(dataset.predicted_classes):
        expected = 0.4 * math.log((points[class_id].item() + 1) / total)
        assert shift[column].item() == pytest.approx(expected, rel=1e-6)


@pytest.mark.parametrize("tau", [0.3, 0.0])
def test_the_command_shifts_the_bias_alone(tiny_dataset, checkpoint, tau, tmp_path, capsys):
    path, config = checkpoint
    out = tmp_path / "adjusted.safetensors"
    assert main(["adjust-logits", "--checkpoint", str(path), "--data", str(tiny_dataset), "--sequences", "00", "01",
                 "--tau", str(tau), "--out", str(out)]) == 0
    assert f"wrote {out}" in capsys.readouterr().out
    before, before_metadata = tensors_and_metadata(path)
    after, after_metadata = tensors_and_metadata(out)
    assert after_metadata == before_metadata and after.keys() == before.keys()
    assert all(torch.equal(after[name], before[name]) for name in before if name != "classifier.bias")
    counts = label_counts(tiny_dataset, ["00", "01"], config.dataset)
    assert counts.sum() > 0
    predicted = np.array(config.dataset.predicted_classes)
    share = (counts[predicted] + 1) / (counts[predicted] + 1).sum()
    expected = before["classifier.bias"].double() + torch.from_numpy(tau * np.log(share))
    assert torch.allclose(after["classifier.bias"].double(), expected, rtol=0, atol=1e-6)
    if tau == 0:
        assert torch.equal(after["classifier.bias"], before["classifier.bias"])


@pytest.mark.parametrize("tau", [float("nan"), float("inf")])
def test_a_tau_that_is_not_finite_is_refused(tau):
    dataset = load_model_config("demo").dataset
    with pytest.raises(ValueError, match="tau must be a finite number"):
        logit_shift(torch.ones(dataset.num_classes, dtype=torch.int64), tau, dataset)


def test_counts_of_another_dataset_are_refused():
    dataset = load_model_config("demo").dataset
    with pytest.raises(ValueError, match="one count per class"):
        logit_shift(torch.ones(dataset.num_classes + 1, dtype=torch.int64), 0.3, dataset)


def test_a_model_without_a_float_classifier_is_refused():
    model = torch.nn.Sequential(torch.nn.Linear(3, 4))
    with pytest.raises(ValueError, match="no float classifier with a bias"):
        shift_classifier_bias(model, torch.zeros(4))


def test_a_folder_without_scans_fails_in_one_line(checkpoint, tmp_path, capsys):
    path, _ = checkpoint
    (tmp_path / "empty" / "sequences" / "00" / "velodyne").mkdir(parents=True)
    out = tmp_path / "adjusted.safetensors"
    assert main(["adjust-logits", "--checkpoint", str(path), "--data", str(tmp_path / "empty"), "--sequences", "00",
                 "--tau", "0.3", "--out", str(out)]) == 2
    assert "no scans" in capsys.readouterr().err
    assert not out.exists()
