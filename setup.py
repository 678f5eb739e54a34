"""Builds pointengine._C from csrc/: the CPU kernels always, the CUDA kernels when torch has CUDA
(or FORCE_CUDA=1)."""

import glob
import os

import torch
from setuptools import setup
from torch.utils.cpp_extension import BuildExtension, CppExtension, CUDAExtension


def extension():
    sources = ["csrc/bindings.cpp", *sorted(glob.glob("csrc/cpu/*.cpp"))]
    cxx_flags = ["-O3", "-std=c++17", "-fopenmp"]
    with_cuda = torch.cuda.is_available() or os.environ.get("FORCE_CUDA") == "1"
    cuda_sources = sorted(glob.glob("csrc/cuda/*.cu"))
    if with_cuda and cuda_sources:
        return CUDAExtension(
            "pointengine._C",
            sources + cuda_sources,
            define_macros=[("WITH_CUDA", None)],
            extra_compile_args={"cxx": cxx_flags, "nvcc": ["-O3", "-std=c++17"]},
            extra_link_args=["-fopenmp"],
        )
    return CppExtension(
        "pointengine._C", sources, extra_compile_args={"cxx": cxx_flags}, extra_link_args=["-fopenmp"]
    )


setup(ext_modules=[extension()], cmdclass={"build_ext": BuildExtension})
