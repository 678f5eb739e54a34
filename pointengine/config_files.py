"""The YAML configs at the repository top: the model zoo (models/) and the datasets (datasets/)."""

from pathlib import Path

import yaml

REPO_TOP = Path(__file__).resolve().parents[1]


def available_configs(folder: str) -> list[str]:
    """Names of the YAML configs in `folder` at the repository top."""
    return sorted(p.stem for p in (REPO_TOP / folder).glob("*.yaml"))


def read_config(name_or_path, folder: str, what: str) -> tuple[Path, object]:
    """(path, parsed YAML) of `folder/NAME.yaml` at the repository top, or of a .yaml path."""
    path = Path(name_or_path)
    if path.suffix not in (".yaml", ".yml"):
        path = REPO_TOP / folder / f"{name_or_path}.yaml"
        if not path.is_file():
            known = available_configs(folder)
            raise ValueError(f"unknown {what} {name_or_path!r}: expected one of {known} or a .yaml path")
    elif not path.is_file():
        raise ValueError(f"{what} config {str(path)!r} does not exist")
    return path, yaml.safe_load(path.read_text())
