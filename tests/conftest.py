"""Shared test settings: hypothesis profiles, the fuzz budget, the device axis, and thread-count
restoring."""

import pytest
import torch
from hypothesis import HealthCheck, settings

from pointengine.datasets import write_synthetic_dataset

# Property tests must stay quick on a 2-core machine; `--hypothesis-profile=thorough` explores more.
# No deadline: the first example of a test pays for building kernel maps and warming torch.
settings.register_profile(
    "default", max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow], print_blob=True
)
settings.register_profile("thorough", parent=settings.get_profile("default"), max_examples=300)
settings.load_profile("default")


def _cuda_ready() -> bool:
    if not torch.cuda.is_available():
        return False
    from pointengine import _C

    return _C.built_with_cuda()


@pytest.fixture(
    params=[
        "cpu",
        pytest.param(
            "cuda",
            marks=[pytest.mark.cuda, pytest.mark.skipif(not _cuda_ready(), reason="needs CUDA and a CUDA build")],
        ),
    ]
)
def device(request) -> torch.device:
    """Every device: CUDA cases are marked and skipped without a GPU or a CUDA build."""
    return torch.device(request.param)


@pytest.fixture
def restore_threads():
    """Puts torch's intra-op thread count back after a test that changes it."""
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


def pytest_addoption(parser):
    # `make sanitize` raises it to fuzz for a few minutes under the sanitizers; `make test` samples.
    parser.addoption("--fuzz-examples", type=int, default=40, help="examples per fuzz test (tests/test_fuzz.py)")


@pytest.fixture
def fuzz_examples(request) -> int:
    return request.config.getoption("--fuzz-examples")


# --- training tests (test_train.py, test_cli_train.py) ------------------------------------------------

TINY_TRAIN_CONFIG = """architecture: {architecture}
cr: 0.125
dataset: semantickitti
voxel_size: 0.5
quantization: floor
reduce: mean
features: [x, y, z, remission]
feature_scale: [0.05, 0.05, 0.05, 1.0]
"""


@pytest.fixture
def tiny_config(tmp_path):
    """A function writing a tiny zoo config (cr 0.125 at 0.5 m voxels) of an architecture; its path."""

    def write(architecture: str = "minkunet"):
        path = tmp_path / f"tiny_{architecture}.yaml"
        path.write_text(TINY_TRAIN_CONFIG.format(architecture=architecture))
        return path

    return write


@pytest.fixture
def one_thread(restore_threads):
    """Tiny models run fastest on one thread, and a 2-core CI machine shares its cores."""
    torch.set_num_threads(1)


@pytest.fixture(scope="module")
def tiny_dataset(tmp_path_factory):
    """Three small synthetic scans on disk in the SemanticKITTI layout: sequence 00 (2), 01 (1)."""
    root = tmp_path_factory.mktemp("synthetic")
    return write_synthetic_dataset(root, {"00": 2, "01": 1}, seed=3, beams=8, azimuth_steps=128)
