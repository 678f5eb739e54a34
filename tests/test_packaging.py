"""A non-editable install carries the zoo and dataset configs inside the package and works from any
folder. The wheel's Python files and data are laid out by setup.py's build_py (what `pip install .`
runs, minus compiling the extension, which is copied from this build)."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pointengine
from pointengine.config_files import available_configs

REPO = Path(__file__).resolve().parents[1]


def test_installed_layout_works_from_another_folder(tmp_path):
    target = tmp_path / "site"
    subprocess.run([sys.executable, "setup.py", "-q", "build_py", "-d", str(target)], cwd=REPO, check=True,
                   capture_output=True)
    installed = target / "pointengine"
    assert sorted(p.stem for p in (installed / "zoo").glob("*.yaml")) == available_configs("models")
    assert sorted(p.stem for p in (installed / "dataset_configs").glob("*.yaml")) == available_configs("datasets")
    extension = Path(pointengine._C.__file__)
    shutil.copy(extension, installed / extension.name)
    code = (
        "import pointengine, pointengine.config_files as c\n"
        "from pointengine.models import build_model\n"
        "from pointengine.datasets import load_dataset_config\n"
        "print(pointengine.__file__)\nprint(c.config_folder('models'))\n"
        "print(build_model('minkunet_cr0.5').classifier.out_features, load_dataset_config('nuscenes').num_classes)\n"
    )
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    result = subprocess.run([sys.executable, "-c", code], cwd=elsewhere, capture_output=True, text=True,
                            env=dict(os.environ, PYTHONPATH=str(target)))  # the rest kept: make sanitize preloads
    assert result.returncode == 0, result.stderr
    module, zoo, counts = result.stdout.strip().splitlines()
    assert Path(module).is_relative_to(target) and Path(zoo) == installed / "zoo"
    assert counts == "19 17"
