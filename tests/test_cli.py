"""The `pointengine` command: info, and an import that leaves CUDA alone (the demo: test_demo.py)."""

import subprocess
import sys

import torch

import pointengine
from pointengine.cli import main


def test_info_names_versions_and_build(capsys):
    assert main(["info"]) == 0
    out = capsys.readouterr().out
    assert f"pointengine {pointengine.__version__}" in out
    assert f"torch {torch.__version__}" in out
    assert "kernels: CPU" in out and "OpenMP:" in out and "CPU kernel paths: portable" in out and "conv float32: " in out
    assert "conv int8: " in out and "conv bfloat16: " in out


def test_import_does_not_initialise_cuda():
    code = "import torch, pointengine, pointengine.nn, pointengine.models; print(torch.cuda.is_initialized())"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "False"
