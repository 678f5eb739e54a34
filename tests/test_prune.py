"""pointengine.compress.prune: the channel groups of MinkUNet and SPVCNN (written out here by hand),
exactness when the pruned channels carry nothing, widths, parameters and MACs of the result, the
scores, optimize on a pruned model, the checkpoint round trip through Segmenter and `pointengine
train`, and bad arguments refused."""

import copy
import json
import math

import pytest
import safetensors
import torch

import pointengine as pe
from pointengine.cli import main
from pointengine.compress import prune
from pointengine.compress.prune import kept_channels
from pointengine.models import (
    SPVCNN,
    MinkUNet,
    build_model,
    checkpoint_config,
    load_checkpoint,
    load_model_config,
    save_checkpoint,
)
from pointengine.models.channels import channel_graph
from pointengine.models.config import model_config_from_dict
from pointengine.profiler import count_macs
from pointengine.testing import random_points, random_sites, randomize_batchnorm, relative_error

# cr 0.25: widths 8, 8, 16, 32, 64, 64, 32, 24, 24, all even, so that ratio 0.5 halves every group.
CR = 0.25
ARCHITECTURES = {"minkunet": MinkUNet, "spvcnn": SPVCNN}


def randomized(model: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """Random running statistics, and affine parameters of either sign, so that every channel scores
    and passes something different."""
    randomize_batchnorm(model, seed)
    gen = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, torch.nn.BatchNorm1d):
                sign = torch.randint(0, 2, (module.num_features,), generator=gen) * 2 - 1
                module.weight.copy_(sign * (torch.rand(module.num_features, generator=gen) + 0.5))
                module.bias.copy_(torch.rand(module.num_features, generator=gen) * 0.4 - 0.1)
    return model.eval()


def sparse_input(n: int = 2500, seed: int = 0) -> pe.SparseTensor:
    gen = torch.Generator().manual_seed(seed)
    coords = random_sites(n, 2, 30, gen)
    return pe.SparseTensor(torch.randn(len(coords), 4, generator=gen), coords)


def same_state(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    """The same names and values (extra state, such as a conv's dataflow, compared as it is)."""
    ours, theirs = a.state_dict(), b.state_dict()
    return ours.keys() == theirs.keys() and all(
        torch.equal(v, theirs[k]) if isinstance(v, torch.Tensor) else v == theirs[k] for k, v in ours.items()
    )


def logits(model: torch.nn.Module, x: pe.SparseTensor) -> torch.Tensor:
    with torch.no_grad():
        return model(pe.SparseTensor(x.feats, x.coords)).feats


# --- the channel groups ------------------------------------------------------------------------------


def expected_groups(architecture: str) -> dict[str, list[str]]:
    """Group -> the layers writing it, from the networks' definitions (minkunet.py, spvcnn.py, blocks.py):
    down stage 0's residual blocks keep their width (identity shortcuts: one group with the strided
    conv); the others change it in their first block (projection shortcut); each up stage's first
    block projects the concatenation, its second keeps the width. SPVCNN's point MLPs add into the
    outputs of down stage 4, up stage 2 and up stage 4."""
    groups = {"stem.0.0": ["stem.0.0"], "stem.1.0": ["stem.1.0"],
              "down.0.0.0": ["down.0.0.0", "down.0.1.main.3", "down.0.2.main.3"],
              "down.0.1.main.0": ["down.0.1.main.0"], "down.0.2.main.0": ["down.0.2.main.0"]}
    for i in (1, 2, 3):
        groups[f"down.{i}.0.0"] = [f"down.{i}.0.0"]
        groups[f"down.{i}.1.main.0"] = [f"down.{i}.1.main.0"]
        groups[f"down.{i}.1.main.3"] = [f"down.{i}.1.main.3", f"down.{i}.1.shortcut.0", f"down.{i}.2.main.3"]
        groups[f"down.{i}.2.main.0"] = [f"down.{i}.2.main.0"]
    for i in range(4):
        groups[f"up.{i}.0"] = [f"up.{i}.0"]
        groups[f"up_blocks.{i}.0.main.0"] = [f"up_blocks.{i}.0.main.0"]
        groups[f"up_blocks.{i}.0.main.3"] = [f"up_blocks.{i}.0.main.3", f"up_blocks.{i}.0.shortcut.0",
                                             f"up_blocks.{i}.1.main.3"]
        groups[f"up_blocks.{i}.1.main.0"] = [f"up_blocks.{i}.1.main.0"]
    if architecture == "spvcnn":
        for i, group in enumerate(("down.3.1.main.3", "up_blocks.1.0.main.3", "up_blocks.3.0.main.3")):
            groups[group].append(f"point_transforms.{i}.0")
    return groups


@pytest.mark.parametrize("architecture", ARCHITECTURES)
def test_channel_groups(architecture):
    graph = channel_graph(ARCHITECTURES[architecture](4, 19, CR))
    assert {name: [layer.name for layer in producers] for name, producers in graph.groups.items()} == \
        expected_groups(architecture)
    inputs = {layer.name: layer.inputs for layer in graph.layers}
    w = MinkUNet(4, 19, CR).widths
    skips = ("down.2.1.main.3", "down.1.1.main.3", "down.0.0.0", "stem.1.0")
    for i, skip in enumerate(skips):
        for reader in (f"up_blocks.{i}.0.main.0", f"up_blocks.{i}.0.shortcut.0"):
            assert inputs[reader] == ((f"up.{i}.0", w[5 + i]), (skip, w[3 - i]))
    assert inputs["stem.0.0"] == ((None, 4),)
    assert inputs["classifier"] == (("up_blocks.3.0.main.3", w[8]),)
    assert next(layer for layer in graph.layers if layer.name == "classifier").output is None
    if architecture == "spvcnn":
        assert [inputs[f"point_transforms.{i}.0"][0][0] for i in range(3)] == ["stem.1.0", "down.3.1.main.3",
                                                                             "up_blocks.1.0.main.3"]


# --- exactness ----------------------------------------------------------------------------------------


def silence_pruned_channels(model: torch.nn.Module, ratio: float, seed: int) -> None:
    """In each group, a random choice of the channels prune(ratio) is to drop gets gamma = beta = 0 in
    the BatchNorm of every layer writing it: they are exactly 0 after it (and after the ReLU or the
    residual sum), so they feed nothing, and their "bn" score is the lowest."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for producers in channel_graph(model).groups.values():
            width = producers[0].norm.num_features
            dropped = torch.randperm(width, generator=gen)[kept_channels(width, ratio):]
            for layer in producers:
                layer.norm.weight[dropped] = 0
                layer.norm.bias[dropped] = 0


def scaled(model: torch.nn.Module, factor_of) -> int:
    """The parameter count of `model` with each tensor's size multiplied by factor_of(name, tensor)."""
    return round(sum(p.numel() * factor_of(name, p) for name, p in model.named_parameters()))


def halved_size(name: str, tensor: torch.Tensor) -> float:
    """What ratio 0.5 leaves of a parameter at cr 0.25: weights lose half their inputs and half their
    outputs, except the first conv's inputs (the point features) and the classifier's outputs; vectors
    (BatchNorm, point MLP biases) half; the classifier's bias all."""
    if name == "classifier.bias":
        return 1
    if tensor.dim() == 1 or name in ("stem.0.0.weight", "classifier.weight"):
        return 0.5
    return 0.25


@pytest.mark.parametrize("architecture", ARCHITECTURES)
def test_pruning_silent_channels_changes_no_output(architecture):
    model = randomized(ARCHITECTURES[architecture](4, 19, CR), seed=2)
    silence_pruned_channels(model, 0.5, seed=3)
    pruned = prune(model, 0.5)
    x = sparse_input()
    expected = logits(model, x)
    assert relative_error(logits(pruned, x), expected) <= 1e-5
    if architecture == "spvcnn":
        gen = torch.Generator().manual_seed(5)
        points = pe.PointTensor(torch.randn(2000, 4, generator=gen), random_points(2000, 2, 20.0, gen, low=-10.0))
        with torch.no_grad():
            assert relative_error(pruned(points).feats, model(points).feats) <= 1e-5
    assert sum(p.numel() for p in pruned.parameters()) == scaled(model, halved_size)
    assert pruned.widths == tuple(w // 2 for w in model.widths)


@pytest.mark.parametrize("architecture", ARCHITECTURES)
def test_macs_of_a_halved_model(architecture):
    """A sparse conv does pairs x C_in x C_out: ratio 0.5 quarters every one but the first (its input
    is the points' features) and the classifier (its output the classes), which it halves."""
    model = randomized(ARCHITECTURES[architecture](4, 19, CR))
    x = sparse_input()
    rows = pe.profile(model, x, repeats=1, warmup=0, end_to_end=False, peaks=False).layers
    expected = sum(row.macs * (0.5 if row.name in ("stem.0.0", "classifier") else 0.25) for row in rows)
    assert count_macs(prune(model, 0.5), x) == round(expected)


# --- widths and scores ----------------------------------------------------------------------------------


@pytest.mark.parametrize("architecture", ARCHITECTURES)
@pytest.mark.parametrize("ratio", [0.0, 0.25, 0.5, 0.9])
def test_widths(architecture, ratio):
    model = randomized(ARCHITECTURES[architecture](4, 19, CR))
    pruned = prune(model, ratio, score="l1" if ratio == 0.25 else "bn")
    before, after = channel_graph(model), channel_graph(pruned)
    assert list(after.groups) == list(before.groups)
    for name, width in before.widths().items():
        assert after.widths()[name] == max(1, math.ceil((1 - ratio) * width)), name
    assert pruned.widths == tuple(after.widths()[name] for name in after.stage_outputs)
    for layer in after.layers:
        norm = layer.norm
        assert norm is None or norm.num_features == after.widths()[layer.output]
    out = logits(pruned, sparse_input())
    assert out.shape == (logits(model, sparse_input()).shape[0], 19) and bool(out.isfinite().all())
    assert pruned.training is model.training and type(pruned) is type(model)


def test_ratio_zero_is_the_same_model():
    model = randomized(SPVCNN(4, 19, CR))
    pruned = prune(model, 0.0)
    assert pruned is not model
    assert same_state(pruned, model)
    assert torch.equal(logits(pruned, sparse_input()), logits(model, sparse_input()))


def test_the_input_model_is_untouched():
    model = randomized(MinkUNet(4, 19, CR))
    state = copy.deepcopy(model)
    prune(model, 0.5)
    assert model.widths == MinkUNet(4, 19, CR).widths
    assert same_state(model, state)


def test_kept_channels_round_up():
    assert [kept_channels(10, r) for r in (0.0, 0.05, 0.7, 0.75, 0.99)] == [10, 10, 3, 3, 1]
    assert kept_channels(96, 0.5) == 48 and kept_channels(1, 0.5) == 1


@pytest.mark.parametrize("score", ["bn", "l1"])
def test_the_highest_scores_are_kept(score):
    """One group written by one conv (down.1.0.0) and one written by three (a projection block's main
    path and shortcut, and the next block's main path): the kept channels are the top scores summed
    over the writers, in their original order."""
    model = randomized(MinkUNet(4, 19, CR), seed=7)
    for group, writers, norm in (
        ("down.1.0.0", [model.down[1][0]], model.down[1][0][1]),
        ("down.1.1.main.3", [model.down[1][1].main[3:], model.down[1][1].shortcut, model.down[1][2].main[3:]],
         model.down[1][1].main[4]),
    ):
        if score == "bn":
            scores = sum(w[1].weight.detach().abs() for w in writers)
        else:
            scores = sum(w[0].weight.detach().abs().sum((0, 1)) for w in writers)
        kept = torch.topk(scores, kept_channels(len(scores), 0.6)).indices.sort().values
        pruned = prune(model, 0.6, score=score)
        assert torch.equal(pruned.get_submodule(_name_of(model, norm)).weight, norm.weight[kept]), group


def _name_of(model: torch.nn.Module, module: torch.nn.Module) -> str:
    return next(name for name, m in model.named_modules() if m is module)


@pytest.mark.parametrize("architecture", ARCHITECTURES)
def test_optimize_of_a_pruned_model(architecture):
    pruned = prune(randomized(ARCHITECTURES[architecture](4, 19, CR), seed=4), 0.5)
    x = sparse_input()
    assert relative_error(logits(pe.optimize(pruned), x), logits(pruned, x)) <= 1e-5


def test_a_pruned_model_trains():
    pruned = prune(randomized(MinkUNet(4, 19, CR)), 0.5).train()
    before = pruned.down[2][1].main[1].running_mean.clone()
    out = pruned(sparse_input())
    out.feats.square().mean().backward()
    assert all(p.grad is not None and p.grad.shape == p.shape for p in pruned.parameters())
    assert not torch.equal(pruned.down[2][1].main[1].running_mean, before)


# --- checkpoints, Segmenter, training ----------------------------------------------------------------------


def load_model_config_of(path):
    return model_config_from_dict(checkpoint_config(path), "pruned", str(path))


@pytest.fixture
def pruned_checkpoint(tiny_config, tmp_path):
    """A pruned tiny MinkUNet (the training tests' config) saved with its config; (model, path)."""
    config = load_model_config(tiny_config())
    model = prune(randomized(build_model(config), seed=5), 0.5)
    return model, save_checkpoint(model, tmp_path / "pruned.safetensors", config.to_dict())


def test_checkpoint_round_trip(pruned_checkpoint):
    pruned, path = pruned_checkpoint
    with safetensors.safe_open(path, framework="pt") as file:
        assert json.loads(file.metadata()["channels"]) == channel_graph(pruned).widths()
    target = build_model(load_model_config_of(path))
    assert "narrowed to the checkpoint's channel widths" in str(load_checkpoint(target, path))
    assert not load_checkpoint(target, path).narrowed  # already narrow
    assert target.widths == pruned.widths and target.widths != build_model(load_model_config_of(path)).widths
    x = sparse_input()
    assert torch.equal(logits(target.eval(), x), logits(pruned, x))


def test_a_checkpoint_that_does_not_fit_leaves_the_model_as_it_was(pruned_checkpoint, tmp_path):
    _, path = pruned_checkpoint
    spvcnn = SPVCNN(4, 19, 0.125)
    with pytest.raises(ValueError, match="missing point_transforms"):
        load_checkpoint(spvcnn, path)
    assert spvcnn.widths == SPVCNN(4, 19, 0.125).widths and spvcnn.stem[0][0].weight.shape == (27, 4, 4)


def test_segmenter_with_a_pruned_checkpoint(pruned_checkpoint, tiny_dataset):
    pruned, path = pruned_checkpoint
    segmenter = pe.Segmenter(checkpoint=path)
    assert segmenter.model.widths == pruned.widths
    points = pe.datasets.read_points(tiny_dataset / "sequences" / "01" / "velodyne" / "000000.bin")
    labels, point_logits = segmenter(points, return_logits=True)
    assert labels.shape == (len(points),)
    x = segmenter.preprocess(points)
    expected = logits(pruned, x).index_select(0, segmenter.voxelize([points]).inverse)
    assert torch.equal(point_logits, expected)


@pytest.mark.usefixtures("one_thread")
def test_pointengine_train_fine_tunes_a_pruned_checkpoint(pruned_checkpoint, tiny_dataset, tmp_path):
    pruned, path = pruned_checkpoint
    out = tmp_path / "tuned"
    assert main(["train", "--init", str(path), "--data", str(tiny_dataset), "--train-sequences", "00",
                 "--val-sequences", "--epochs", "1", "--batch-size", "1", "--lr", "0.01", "--out", str(out)]) == 0
    tuned = build_model(load_model_config_of(out / "model.safetensors"))
    load_checkpoint(tuned, out / "model.safetensors")
    assert tuned.widths == pruned.widths
    assert not torch.equal(tuned.stem[0][0].weight, pruned.stem[0][0].weight)  # two steps moved the weights


# --- bad arguments ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("ratio", [1.0, -0.1, 1.5, float("nan"), "0.5", True, None])
def test_bad_ratio(ratio):
    with pytest.raises(ValueError, match=r"ratio must be a number in \[0, 1\), got " + repr(ratio).replace(".", r"\.")):
        prune(MinkUNet(4, 19, CR), ratio)


def test_bad_score():
    with pytest.raises(ValueError, match=r"score must be one of \('bn', 'l1'\), got 'l2'"):
        prune(MinkUNet(4, 19, CR), 0.5, score="l2")


@pytest.mark.parametrize("model", [torch.nn.Linear(4, 4), pe.optimize(MinkUNet(4, 19, CR))],
                         ids=["linear", "optimized"])
def test_unsupported_model(model):
    with pytest.raises(TypeError, match="prune works on MinkUNet and SPVCNN in training form"):
        prune(model, 0.5)
