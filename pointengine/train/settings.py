"""What a training run is: the model config, the data split and the hyperparameters. A resumed run
takes them from its saved state; a setting given again must equal the saved one, since a changed
one would not continue the same run."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields, replace

from ..models.checkpoint import checkpoint_config
from ..models.config import ModelConfig, load_model_config, model_config_from_dict

OPTIMIZERS = ("sgd", "adamw")
DEFAULT_LR = {"sgd": 0.1, "adamw": 2e-3}
SGD_MOMENTUM = 0.9


@dataclass(frozen=True)
class TrainSettings:
    """`config`: the model config as a dict (ModelConfig.to_dict, so a run never depends on a zoo
    file changing); `class_balance`: the exponent p of the loss weight share^-p of each class
    (data.class_weights; 0: unweighted); `init`: the checkpoint the weights start from (None: seeded
    initialisation); `distill`: a teacher checkpoint whose softened predictions the model also learns,
    that term taking `distill_weight` of the loss at `distill_temperature` (distill.py); `lovasz_weight`:
    the weight of the Lovász-softmax term added to the cross-entropy (lovasz.py; 0: none)."""

    config: dict
    train_sequences: tuple[str, ...] = ("00", "01", "02", "03", "04", "05", "06", "07", "09", "10")
    val_sequences: tuple[str, ...] = ("08",)
    epochs: int = 15
    batch_size: int = 2
    optimizer: str = "sgd"
    lr: float = DEFAULT_LR["sgd"]
    weight_decay: float = 1e-4
    warmup_epochs: float = 1.0
    class_balance: float = 0.0
    seed: int = 0
    init: str | None = None
    distill: str | None = None
    distill_weight: float = 0.5
    distill_temperature: float = 2.0
    lovasz_weight: float = 0.0

    def model_config(self) -> ModelConfig:
        return model_config_from_dict(self.config, self.config.get("name", "model"), "training settings")

    def to_dict(self) -> dict:
        values = asdict(self)
        values["train_sequences"], values["val_sequences"] = list(self.train_sequences), list(self.val_sequences)
        return values


def resolve_config(config, init: str | None) -> dict:
    """A zoo name or YAML path, or else the config stored in the `init` checkpoint, as a dict."""
    if config is not None:
        loaded = config if isinstance(config, ModelConfig) else load_model_config(config)
        return loaded.to_dict()
    saved = checkpoint_config(init) if init is not None else None
    if saved is None:
        raise ValueError("--config is required (a zoo name or a YAML path) unless --init names a pointengine checkpoint")
    return saved


def new_settings(config=None, **given) -> TrainSettings:
    """Settings of a fresh run: `given` holds the settings the user set (None values are left out)."""
    given = {key: value for key, value in given.items() if value is not None}
    _check_names(given)
    if "optimizer" in given and "lr" not in given:
        given["lr"] = DEFAULT_LR[given["optimizer"]]
    settings = TrainSettings(config=resolve_config(config, given.get("init")), **_typed(given))
    return _checked(settings)


def resumed_settings(saved: dict, config=None, **given) -> TrainSettings:
    """The saved settings of a run; any setting given must equal its saved value."""
    settings = TrainSettings(**_typed(saved))
    given = {key: value for key, value in given.items() if value is not None}
    _check_names(given)
    if config is not None:
        given["config"] = resolve_config(config, None)
    wanted = replace(settings, **_typed(given))
    differ = [f.name for f in fields(TrainSettings) if getattr(wanted, f.name) != getattr(settings, f.name)]
    if differ:
        shown = ", ".join(f"{name} (saved {getattr(settings, name)!r})" for name in differ if name != "config")
        raise ValueError(f"--resume continues the saved run; these settings differ from it: {shown or 'config'}")
    return settings


def _check_names(given: dict) -> None:
    known = {f.name for f in fields(TrainSettings)}
    unknown = sorted(set(given) - known)
    if unknown:
        raise ValueError(f"unknown training settings {unknown}; known: {sorted(known)}")


def _typed(values: dict) -> dict:
    out = dict(values)
    for name in ("train_sequences", "val_sequences"):
        if name in out:
            out[name] = tuple(str(s) for s in out[name])
    return out


def _checked(settings: TrainSettings) -> TrainSettings:
    if settings.optimizer not in OPTIMIZERS:
        raise ValueError(f"optimizer must be one of {OPTIMIZERS}, got {settings.optimizer!r}")
    for name in ("epochs", "batch_size"):
        if getattr(settings, name) < 1:
            raise ValueError(f"{name} must be >= 1, got {getattr(settings, name)}")
    for name in ("lr", "weight_decay", "warmup_epochs", "class_balance", "lovasz_weight"):
        value = getattr(settings, name)
        if not value >= 0:
            raise ValueError(f"{name} must be >= 0, got {value}")
    if not 0 <= settings.distill_weight <= 1:
        raise ValueError(f"distill_weight must be in [0, 1], got {settings.distill_weight}")
    if not settings.distill_temperature > 0:
        raise ValueError(f"distill_temperature must be > 0, got {settings.distill_temperature}")
    if not settings.train_sequences:
        raise ValueError("train_sequences must name at least one sequence")
    settings.model_config()  # a malformed config fails here, before any data is read
    return settings
