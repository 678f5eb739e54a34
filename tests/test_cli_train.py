"""`pointengine train` end to end on a tiny synthetic set, fine-tuning with --init, resuming, and bad
data refused in one line before any step (nothing written)."""

import shutil

import numpy as np
import pytest

from pointengine.cli import main
from pointengine.datasets import read_labels
from pointengine.models import checkpoint_config
from pointengine.train import load_train_state

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def dataset(tiny_dataset):
    return tiny_dataset


@pytest.fixture
def config(tiny_config):
    return tiny_config()


def run_train(*args) -> int:
    return main(["train", *map(str, args)])


def test_train_then_segment_with_the_weights(dataset, config, tmp_path, capsys):
    out = tmp_path / "run"
    args = ["--config", config, "--data", dataset, "--train-sequences", "00", "--val-sequences", "01",
            "--batch-size", "2", "--lr", "0.05", "--out", out]
    assert run_train(*args, "--epochs", "1") == 0
    printed = capsys.readouterr()
    assert "epoch 1/1: loss " in printed.out and "val mIoU" in printed.out and "final val mIoU" in printed.out
    assert "scans_s=" in printed.err  # the progress bar
    assert checkpoint_config(out / "model.safetensors")["architecture"] == "minkunet"
    assert (out / "metrics.jsonl").read_text().count("\n") == 1

    # the same run resumed for one more epoch needs no repeated settings but refuses a changed one
    assert run_train("--data", dataset, "--resume", out, "--lr", "0.1") == 2
    assert "differ from it: lr (saved 0.05)" in capsys.readouterr().err
    assert run_train("--data", dataset, "--resume", out, "--batch-size", "2") == 0  # same value: fine
    assert "all 1 epochs are done already" in capsys.readouterr().out
    assert run_train("--data", dataset, "--resume", out / "train_state.safetensors") == 0  # the file, not the folder
    assert "all 1 epochs are done already" in capsys.readouterr().out
    assert load_train_state(out).epochs_done == 1  # already all epochs done: nothing more to run

    label = tmp_path / "pred.label"
    scan = dataset / "sequences" / "01" / "velodyne" / "000000.bin"
    assert main(["segment", str(scan), "--checkpoint", str(out / "model.safetensors"), "--out", str(label)]) == 0
    raw, _ = read_labels(label)
    assert raw.shape[0] == scan.stat().st_size // 16


def test_init_fine_tunes_from_a_checkpoint(dataset, config, tmp_path, capsys):
    first = tmp_path / "first"
    common = ["--data", dataset, "--train-sequences", "00", "--val-sequences", "--epochs", "1", "--threads", "1"]
    assert run_train("--config", config, *common, "--out", first) == 0
    capsys.readouterr()
    assert run_train("--init", first / "model.safetensors", *common, "--out", tmp_path / "tuned",
                     "--optimizer", "adamw", "--lovasz-weight", "0.5") == 0
    printed = capsys.readouterr().out
    assert "init from" in printed and "pointengine layout" in printed and "parameters loaded" in printed
    settings = load_train_state(tmp_path / "tuned").settings
    assert settings["lr"] == 2e-3  # adamw's default rate
    assert settings["lovasz_weight"] == 0.5


def test_negative_lovasz_weight_refused(dataset, config, tmp_path, capsys):
    assert run_train("--config", config, "--data", dataset, "--lovasz-weight", "-1", "--out", tmp_path / "run") == 2
    assert "lovasz_weight must be >= 0, got -1.0" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()


def test_config_needed_without_a_checkpoint(dataset, tmp_path, capsys):
    assert run_train("--data", dataset, "--out", tmp_path / "run") == 2
    assert "--config is required" in capsys.readouterr().err


def broken_copy(dataset, tmp_path):
    root = tmp_path / "broken"
    shutil.copytree(dataset, root)
    return root, root / "sequences" / "00"


def refuses(root, config, tmp_path, capsys, match: str, sequences=("00",)):
    out = tmp_path / "run"
    code = run_train("--config", config, "--data", root, "--train-sequences", *sequences, "--val-sequences", "01",
                     "--out", out)
    err = capsys.readouterr().err
    assert code == 2
    assert err.count("\n") == 1 and err.startswith("pointengine train: error: ")
    assert match in err, err
    assert not out.exists()  # refused before any step
    return err


def test_missing_label_file(dataset, config, tmp_path, capsys):
    root, folder = broken_copy(dataset, tmp_path)
    (folder / "labels" / "000001.label").unlink()
    refuses(root, config, tmp_path, capsys, f"{folder / 'labels' / '000001.label'}: missing label file")


def test_label_count_differs_from_points(dataset, config, tmp_path, capsys):
    root, folder = broken_copy(dataset, tmp_path)
    label = folder / "labels" / "000000.label"
    label.write_bytes(label.read_bytes()[:-8])
    points = (folder / "velodyne" / "000000.bin").stat().st_size // 16
    refuses(root, config, tmp_path, capsys, f"{label}: {points - 2} labels but")


def test_scan_of_partial_points(dataset, config, tmp_path, capsys):
    root, folder = broken_copy(dataset, tmp_path)
    scan = folder / "velodyne" / "000000.bin"
    scan.write_bytes(scan.read_bytes()[:-4])
    refuses(root, config, tmp_path, capsys, f"{scan}: {scan.stat().st_size} bytes is not a whole number of 16-byte points")


def test_empty_folder(dataset, config, tmp_path, capsys):
    root, _ = broken_copy(dataset, tmp_path)
    (root / "sequences" / "02" / "velodyne").mkdir(parents=True)
    refuses(root, config, tmp_path, capsys, "no scans", sequences=("00", "02"))
    refuses(root, config, tmp_path, capsys, "no scans", sequences=("07",))  # no folder at all


def test_unknown_raw_class_id(dataset, config, tmp_path, capsys):
    root, folder = broken_copy(dataset, tmp_path)
    label = folder / "labels" / "000001.label"
    packed = np.fromfile(label, "<u4")
    packed[7] = 33  # not a SemanticKITTI raw id
    packed.tofile(label)
    refuses(root, config, tmp_path, capsys, f"{label}: raw labels [33] are not in the learning_map")


def test_bad_data_in_the_validation_split_too(dataset, config, tmp_path, capsys):
    root, _ = broken_copy(dataset, tmp_path)
    label = root / "sequences" / "01" / "labels" / "000000.label"
    label.unlink()
    refuses(root, config, tmp_path, capsys, f"{label}: missing label file")
