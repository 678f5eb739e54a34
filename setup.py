"""Builds pointengine._C from csrc/: the CPU kernels always, the CUDA kernels when torch has CUDA
(or FORCE_CUDA=1). The configs at the repository top ship inside the package (config_files.py).
PE_SANITIZE=1 builds with AddressSanitizer and UndefinedBehaviorSanitizer (the `make sanitize` build,
kept apart from the normal one)."""

import glob
import os

import torch
from setuptools import find_packages, setup
from torch.utils.cpp_extension import BuildExtension, CppExtension, CUDAExtension


def extension():
    sources = ["csrc/bindings.cpp", *sorted(glob.glob("csrc/cpu/*.cpp"))]
    # -g0 undoes the -g of Python's own compiler flags: debug information of every torch template
    # instantiation took half the compile time (and 90 % of the library's size).
    cxx_flags = ["-O3", "-g0", "-std=c++17", "-fopenmp"]
    link_flags = ["-fopenmp"]
    if os.environ.get("PE_SANITIZE") == "1":
        # -fno-wrapv undoes the -fwrapv that Python's own compiler flags bring in, so that signed
        # overflow is undefined again and UBSan reports it; every report aborts the process.
        sanitize = ["-fsanitize=address,undefined", "-fno-sanitize-recover=all"]
        # -g1: line tables only, enough for the reports' stack traces, at half the compile time of -g.
        cxx_flags = ["-O1", "-g1", "-std=c++17", "-fopenmp", "-fno-omit-frame-pointer", "-fno-wrapv", *sanitize]
        link_flags += sanitize
    with_cuda = torch.cuda.is_available() or os.environ.get("FORCE_CUDA") == "1"
    cuda_sources = sorted(glob.glob("csrc/cuda/*.cu"))
    if with_cuda and cuda_sources:
        return CUDAExtension(
            "pointengine._C",
            sources + cuda_sources,
            define_macros=[("WITH_CUDA", None)],
            extra_compile_args={"cxx": cxx_flags, "nvcc": ["-O3", "-std=c++17", "--expt-relaxed-constexpr"]},
            extra_link_args=link_flags,
        )
    return CppExtension(
        "pointengine._C", sources, extra_compile_args={"cxx": cxx_flags}, extra_link_args=link_flags
    )


setup(
    packages=find_packages(include=["pointengine*"]) + ["pointengine.zoo", "pointengine.dataset_configs"],
    package_dir={"pointengine.zoo": "models", "pointengine.dataset_configs": "datasets"},
    package_data={"pointengine.zoo": ["*.yaml", "*.safetensors"], "pointengine.dataset_configs": ["*.yaml"]},
    ext_modules=[extension()],
    cmdclass={"build_ext": BuildExtension},
)
