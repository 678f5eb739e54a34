"""The `pointengine` command: info, and an import that leaves CUDA alone (the demo: test_demo.py)."""

import os
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


def test_cpu_path_cap_from_the_environment():
    def info(value: str) -> subprocess.CompletedProcess:
        env = dict(os.environ, POINTENGINE_CPU_PATH_MAX=value)
        return subprocess.run([sys.executable, "-m", "pointengine", "info"], env=env, capture_output=True, text=True)

    portable = info("portable")
    assert portable.returncode == 0
    assert "CPU kernel paths: portable (chosen at run time, capped by POINTENGINE_CPU_PATH_MAX)" in portable.stdout
    assert "conv int8: portable (of portable); conv bfloat16: portable (of portable)" in portable.stdout
    without_amx = info("avx512")  # AVX-512 without AMX: an AMX machine then runs and times VNNI and AVX512_BF16
    assert without_amx.returncode == 0 and "amx" not in without_amx.stdout
    typo = info("avx3")
    assert typo.returncode != 0
    assert "POINTENGINE_CPU_PATH_MAX must be portable, avx2, avx512 or amx, got 'avx3'" in typo.stderr
