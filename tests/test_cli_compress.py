"""`pointengine compress`: the steps it reports, the checkpoint it writes (which segments), the JSON
and the picture, a fine-tune through `pointengine train`, and its refusals."""

import json

import pytest
import torch

import pointengine as pe
from pointengine.cli import main
from pointengine.datasets import generate_scan
from pointengine.models import checkpoint_config


def test_prune_and_quantize_the_demo_model(tmp_path, capsys):
    out, table = tmp_path / "demo_int8.safetensors", tmp_path / "steps.json"
    args = ["compress", "--prune", "0.5", "--quantize", "int8", "--repeats", "1", "--threads", "2",
            "--out", out, "--json", table, "--plot", tmp_path / "tradeoff.png"]
    assert main([str(a) for a in args]) == 0
    printed = capsys.readouterr().out
    assert "| step | parameters | size MB | GMACs | latency ms |" in printed
    rows = json.loads(table.read_text())
    assert [r["step"] for r in rows] == ["float", "optimized", "pruned 0.5", "int8"]
    float_row, optimized, pruned, quantized = rows
    assert optimized["agreement"] == 1.0 and optimized["miou"] == pytest.approx(float_row["miou"])
    assert float_row["macs"] / pruned["macs"] > 3.5  # half of the channels in and out
    assert pruned["macs"] == quantized["macs"] and quantized["bytes"] < pruned["bytes"] / 3
    assert (tmp_path / "tradeoff.png").read_bytes()[:4] == b"\x89PNG"

    # The checkpoint is the pruned int8 model: it loads (narrowed, in int8) and segments.
    assert checkpoint_config(out)["architecture"] == "minkunet"
    seg = pe.Segmenter(checkpoint=out)
    assert any(type(m).__name__ == "Int8Conv3d" for m in seg.model.modules())
    labels = seg(generate_scan(seed=2).points)
    assert labels.dtype == torch.int64 and len(labels) > 0


def test_fine_tune_after_pruning(tiny_dataset, tiny_config, tmp_path, capsys, one_thread):
    from pointengine.models.checkpoint import save_checkpoint
    from pointengine.models.config import load_model_config

    config = load_model_config(tiny_config())
    start = save_checkpoint(pe.models.build_model(config), tmp_path / "start.safetensors", config.to_dict())
    args = ["compress", "--checkpoint", start, "--prune", "0.5", "--finetune-epochs", "1", "--data", tiny_dataset,
            "--train-sequences", "00", "--repeats", "1", "--out", tmp_path / "tuned.safetensors", "--json", tmp_path / "t.json"]
    assert main([str(a) for a in args]) == 0
    rows = json.loads((tmp_path / "t.json").read_text())
    assert [r["step"] for r in rows] == ["float", "optimized", "pruned 0.5", "fine-tuned 1 epochs"]
    assert rows[3]["parameters"] == rows[2]["parameters"]
    assert pe.Segmenter(checkpoint=tmp_path / "tuned.safetensors").model.widths == tuple(
        max(1, -(-w // 2)) for w in pe.models.build_model(config).widths)


@pytest.mark.parametrize("extra, message", [
    (["--finetune-epochs", "1"], "--finetune-epochs needs --data"),
    (["--repeats", "0"], "--repeats must be >= 1"),
    (["--prune", "1.5"], "ratio must be a number in [0, 1), got 1.5"),
    (["--quantize", "int8", "--calib", "/nonexistent"], "no .bin scans found"),
    (["--weight-bits", "7"], "--weight-bits is for --quantize int8"),
    (["--quantize", "bf16", "--weight-bits", "7"], "--weight-bits is for --quantize int8"),
])
def test_refusals(extra, message, tmp_path, capsys):
    assert main(["compress", "--out", str(tmp_path / "x.safetensors"), *extra]) == 2
    assert message in capsys.readouterr().err
