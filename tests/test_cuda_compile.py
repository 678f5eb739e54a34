"""Compile-only check of the CUDA kernels (csrc/cuda/*.cu) with nvcc, where pointengine._C was built
without them (a CPU build of torch): a kernel that stopped compiling would otherwise go unnoticed
until a GPU machine built it. Each file compiles alone for sm_90 with the flags of torch's CUDA
extension build; the files compile in parallel, one nvcc per core. Where the extension has the CUDA
kernels, its build compiled them and tests/test_cuda*.py run them: this check skips."""

import os
import shutil
import subprocess
import sysconfig
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import torch
from torch.utils import cpp_extension

from pointengine import _C

ROOT = Path(__file__).resolve().parents[1]
SOURCES = sorted((ROOT / "csrc" / "cuda").glob("*.cu"))
NVCC = shutil.which("nvcc")

# torch's CMake writes c10/cuda/impl/cuda_cmake_macros.h for CUDA builds only, so a CPU wheel lacks
# it; for c10 built as a shared library (every wheel) it holds this one definition.
CUDA_CMAKE_MACROS = "c10/cuda/impl/cuda_cmake_macros.h", "#pragma once\n#define C10_CUDA_BUILD_SHARED_LIBS\n"
# Headers that a CPU wheel of torch, or a CUDA toolkit without its math libraries, does not have.
UNAVAILABLE_HEADERS = ("CUDAConfig.h", "cublas", "cusparse.h", "cusolver")
UNAVAILABLE_HEADER_HINT = (
    "A CPU build of torch has no ATen/cuda/CUDAConfig.h, and a CUDA toolkit without its math libraries has "
    "no cuBLAS, cuSPARSE or cuSOLVER headers, which ATen/cuda/CUDAContext.h includes: include "
    "c10/cuda/CUDAStream.h (c10::cuda::getCurrentCUDAStream), c10/cuda/CUDAGuard.h and cub/cub.cuh instead."
)


def nvcc_command(source: Path, output: Path, extra_include: Path) -> list[str]:
    includes = [*cpp_extension.include_paths(), sysconfig.get_paths()["include"], str(ROOT / "csrc"), str(extra_include)]
    return [
        NVCC, "-c", "-std=c++17", "-O0", "-DWITH_CUDA", *(f"-I{path}" for path in includes),
        f"-D_GLIBCXX_USE_CXX11_ABI={int(torch._C._GLIBCXX_USE_CXX11_ABI)}",
        # What torch's build passes nvcc: --expt-relaxed-constexpr, and no implicit half conversions
        # or operators (code that relies on them would compile here and fail there).
        *cpp_extension.COMMON_NVCC_FLAGS,
        "-Xcompiler", "-fPIC", "-DTORCH_API_INCLUDE_EXTENSION_H", "-DTORCH_EXTENSION_NAME=_C",
        "-gencode", "arch=compute_90,code=sm_90", str(source), "-o", str(output),
    ]


@pytest.fixture(scope="module")
def compiled(request, tmp_path_factory) -> dict[Path, subprocess.CompletedProcess]:
    """nvcc's result for every source file this run selected, compiled in parallel."""
    if NVCC is None:
        pytest.skip("nvcc is not on PATH")
    if _C.built_with_cuda():
        pytest.skip("pointengine._C was built with the CUDA kernels: its build compiled them")
    work = tmp_path_factory.mktemp("nvcc")
    name, text = CUDA_CMAKE_MACROS
    if not any((Path(path) / name).exists() for path in cpp_extension.include_paths()):
        (work / "include" / name).parent.mkdir(parents=True)
        (work / "include" / name).write_text(text)
    selected = sorted({item.callspec.params["source"] for item in request.session.items
                       if item.module is request.module and item.callspec.params["source"] is not None})

    # make sanitize preloads the sanitizer runtimes into Python; nvcc, which is not built for them,
    # crashes under them, and this check is of the sources, not of a process's memory.
    env = {name: value for name, value in os.environ.items() if name != "LD_PRELOAD"}

    def compile_one(source: Path) -> subprocess.CompletedProcess:
        command = nvcc_command(source, work / f"{source.stem}.o", work / "include")
        return subprocess.run(command, capture_output=True, text=True, env=env)

    with ThreadPoolExecutor(max_workers=len(os.sched_getaffinity(0))) as pool:
        return dict(zip(selected, pool.map(compile_one, selected)))


@pytest.mark.parametrize("source", SOURCES or [None], ids=lambda source: source.name if source else "none")
def test_cuda_source_compiles(source, request):
    if source is None:
        pytest.skip("no csrc/cuda/*.cu files yet")
    result = request.getfixturevalue("compiled")[source]
    if result.returncode != 0:
        missing = [line for line in result.stderr.splitlines() if "No such file or directory" in line]
        hint = UNAVAILABLE_HEADER_HINT if any(h in line for h in UNAVAILABLE_HEADERS for line in missing) else ""
        pytest.fail(f"nvcc failed on {source.relative_to(ROOT)}:\n{' '.join(result.args)}\n{result.stderr[-8000:]}\n{hint}")
