"""Shared test settings: hypothesis profiles, the fuzz budget, the device axis, and thread-count
restoring."""

import pytest
import torch
from hypothesis import HealthCheck, settings

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
