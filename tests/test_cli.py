"""The `pointengine` command: info, the demo, and an import that leaves CUDA alone."""

import subprocess
import sys

import numpy as np
import torch

import pointengine
from pointengine.cli import main
from pointengine.datasets import generate_scan
from pointengine.demo import run_demo


def test_info_names_versions_and_build(capsys):
    assert main(["info"]) == 0
    out = capsys.readouterr().out
    assert f"pointengine {pointengine.__version__}" in out
    assert f"torch {torch.__version__}" in out
    assert "kernels: CPU" in out and "OpenMP:" in out and "float32 conv kernel on this CPU:" in out


def test_import_does_not_initialise_cuda():
    code = "import torch, pointengine, pointengine.nn, pointengine.models; print(torch.cuda.is_initialized())"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "False"


def test_demo_report_counts_the_scan():
    report = run_demo(seed=3, model_name="minkunet_cr0.5", repeats=1)
    points = generate_scan(3).points.numpy()
    # Independent count of the occupied 5 cm voxels.
    voxels = np.unique(np.floor(points[:, :3].astype(np.float64) / 0.05).astype(np.int64), axis=0)
    assert report.points == len(points)
    assert report.voxels == len(voxels)
    assert sum(report.point_classes.values()) == len(points)
    assert report.macs > 0 and report.latency_s > 0
