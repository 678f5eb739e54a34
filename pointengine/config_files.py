"""The YAML configs shipped with pointengine: the model zoo (models/) and the datasets (datasets/).

In a source checkout (and an editable install) they sit at the repository top; a wheel carries them
inside the package, where setup.py maps them: models/ -> pointengine/zoo, datasets/ -> pointengine/dataset_configs.
"""

from pathlib import Path

import yaml

PACKAGE = Path(__file__).resolve().parent
INSTALLED_FOLDERS = {"models": "zoo", "datasets": "dataset_configs"}


def config_folder(folder: str) -> Path:
    """Where the configs of `folder` ("models" or "datasets") are in this installation."""
    installed = PACKAGE / INSTALLED_FOLDERS[folder]
    return installed if installed.is_dir() else PACKAGE.parent / folder


def available_configs(folder: str) -> list[str]:
    """Names of the YAML configs in `folder`."""
    return sorted(p.stem for p in config_folder(folder).glob("*.yaml"))


def read_config(name_or_path, folder: str, what: str) -> tuple[Path, object]:
    """(path, parsed YAML) of the config NAME in `folder`, or of a .yaml/.yml path."""
    path = Path(name_or_path)
    if path.suffix not in (".yaml", ".yml"):
        path = config_folder(folder) / f"{name_or_path}.yaml"
        if not path.is_file():
            known = available_configs(folder)
            raise ValueError(f"unknown {what} {str(name_or_path)!r}: expected one of {known} or a .yaml path")
    elif not path.is_file():
        raise ValueError(f"{what} config {str(path)!r} does not exist")
    try:
        return path, yaml.safe_load(path.read_text())
    except yaml.YAMLError as error:
        raise ValueError(f"{path}: not valid YAML ({error})") from None
