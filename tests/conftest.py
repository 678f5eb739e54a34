"""Shared test settings: hypothesis profiles, the fuzz budget, the device axis, skipping the tests
marked cuda without a GPU, the first real scan, and thread-count restoring."""

from pathlib import Path

import pytest
import torch
from hypothesis import HealthCheck, settings

from pointengine.datasets import write_synthetic_dataset
from pointengine.datasets.scan import read_float32_rows

from cuda_helpers import shuffled

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


def pytest_collection_modifyitems(config, items):
    """Tests marked cuda are skipped without a GPU or a CUDA build of the extension."""
    if _cuda_ready():
        return
    skip = pytest.mark.skip(reason="needs a CUDA device and pointengine._C built with CUDA")
    for item in items:
        if item.get_closest_marker("cuda") is not None:
            item.add_marker(skip)


@pytest.fixture(params=["cpu", pytest.param("cuda", marks=pytest.mark.cuda)])
def device(request) -> torch.device:
    """Every device: CUDA cases are marked (and so skipped without a GPU or a CUDA build)."""
    return torch.device(request.param)


SHARED_DATA = Path(__file__).resolve().parents[1] / ".." / "shared" / "data"
KITTI_SCAN = SHARED_DATA / "semantickitti" / "sequences" / "00" / "velodyne" / "000000.bin"


@pytest.fixture(scope="session")
def kitti_scan() -> torch.Tensor:
    """The first real SemanticKITTI scan, float32 [N, 4] (x, y, z, remission); skips without ../shared/data."""
    if not KITTI_SCAN.exists():
        pytest.skip(f"{KITTI_SCAN} is not here (../shared/data)")
    return read_float32_rows(KITTI_SCAN, 4)


@pytest.fixture(scope="session")
def kitti_rows(kitti_scan) -> torch.Tensor:
    """The real scan's points as int32 (0, x, y, z) rows of 0.05 m voxels: ~124k rows, ~92k distinct."""
    xyz = torch.floor(kitti_scan[:, :3].double() / 0.05).int()
    return torch.cat([torch.zeros(len(xyz), 1, dtype=torch.int32), xyz], 1)


@pytest.fixture(scope="session")
def kitti_sites(kitti_rows) -> torch.Tensor:
    """The distinct rows of kitti_rows in a seeded random order."""
    return shuffled(torch.unique(kitti_rows, dim=0), seed=0)


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
