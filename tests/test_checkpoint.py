"""Checkpoints: our safetensors round trip, and every peer layout (TorchSparse 1.x/2.x and the SPVNAS
zoo, MinkowskiEngine, spconv). Each peer's state dict is built here from that engine's documented
layout (the index formulas below, read from its source), never from the converter; the offset
order is proven on single layers against the float64 dense reference, and whole MinkUNets must give
bitwise the outputs of the model the peer state dict was made from."""

import itertools
import json
import re
from pathlib import Path

import pytest
import safetensors
import torch

import pointengine as pe
from pointengine import nn
from pointengine.models import SPVCNN, MinkUNet, load_checkpoint, save_checkpoint
from pointengine.models.minkunet import WIDTHS
from pointengine.testing import (
    RELATIVE_TOLERANCE,
    compare_to_reference,
    dense_conv_reference,
    dense_conv_transpose_reference,
    random_input,
    random_sites,
    read_sites,
    relative_error,
)

# --- each engine's layout, from a weight given per offset: per_offset[ix, iy, iz] = W [C_in, C_out]
# for the offset of dense-kernel index (ix, iy, iz) (odd sizes centred, size 2 from 0 in every engine).


def x_fastest(per_offset):
    """k = ix + kx * (iy + ky * iz): MinkowskiEngine always, TorchSparse for kernels of odd volume
    (for 3x3x3, k = (dx+1) + 3(dy+1) + 9(dz+1))."""
    kx, ky, kz, c_in, c_out = per_offset.shape
    kernel = per_offset.new_empty(kx * ky * kz, c_in, c_out)
    for ix, iy, iz in itertools.product(range(kx), range(ky), range(kz)):
        kernel[ix + kx * (iy + ky * iz)] = per_offset[ix, iy, iz]
    return kernel


def x_slowest(per_offset):
    """k = (ix * ky + iy) * kz + iz: TorchSparse's kernels of even volume (2x2x2: k = 4x + 2y + z)."""
    kx, ky, kz, c_in, c_out = per_offset.shape
    kernel = per_offset.new_empty(kx * ky * kz, c_in, c_out)
    for ix, iy, iz in itertools.product(range(kx), range(ky), range(kz)):
        kernel[(ix * ky + iy) * kz + iz] = per_offset[ix, iy, iz]
    return kernel


def torchsparse_kernel(per_offset, stride):
    """Conv3d.kernel of TorchSparse 1.x/2.x: [C_in, C_out] for volume 1, else [K, C_in, C_out]."""
    kx, ky, kz, c_in, c_out = per_offset.shape
    if kx * ky * kz == 1:
        return per_offset.reshape(c_in, c_out).clone()
    return x_fastest(per_offset) if (kx * ky * kz) % 2 else x_slowest(per_offset)


def minkowski_kernel(per_offset, stride):
    """MinkowskiConvolution.kernel: [C_in, C_out] for volume 1 at stride 1, else [K, C_in, C_out]."""
    kx, ky, kz, c_in, c_out = per_offset.shape
    if kx * ky * kz == 1 and stride == 1:
        return per_offset.reshape(c_in, c_out).clone()
    return x_fastest(per_offset)


def spconv_weight(per_offset, stride):
    """spconv 2.x weight [C_out, kx, ky, kz, C_in]; its 1x1x1 stride-1 path multiplies by
    weight.view(C_in, C_out), so that weight holds W's memory in [C_in, C_out] order."""
    kx, ky, kz, c_in, c_out = per_offset.shape
    if kx * ky * kz == 1 and stride == 1:
        return per_offset.reshape(c_in, c_out).clone().reshape(c_out, 1, 1, 1, c_in)
    return per_offset.permute(4, 0, 1, 2, 3).contiguous()


PEERS = {
    "torchsparse": (torchsparse_kernel, "kernel"),
    "minkowski": (minkowski_kernel, "kernel"),
    "spconv": (spconv_weight, "weight"),
}

# (kernel size, stride, transposed): the layer kinds of a MinkUNet.
LAYERS = {
    "submanifold3": (3, 1, False),
    "strided2": (2, 2, False),
    "transposed2": (2, 2, True),
    "pointwise1": (1, 1, False),
    "strided1": (1, 2, False),
}


def random_layer(kernel_size: int, c_in: int, c_out: int, transposed: bool, seed: int):
    """(per_offset [k, k, k, C_in, C_out], our weight [K, C_in, C_out]) from a random dense kernel:
    conv3d's [C_out, C_in, k, k, k], or conv_transpose3d's [C_in, C_out, k, k, k]."""
    g = torch.Generator().manual_seed(seed)
    k = kernel_size
    if transposed:
        per_offset = torch.randn(c_in, c_out, k, k, k, generator=g, dtype=torch.float64).permute(2, 3, 4, 0, 1)
    else:
        per_offset = torch.randn(c_out, c_in, k, k, k, generator=g, dtype=torch.float64).permute(2, 3, 4, 1, 0)
    # Our documented layout (x slowest), which pointengine.testing's dense references read back.
    return per_offset.contiguous(), per_offset.reshape(k**3, c_in, c_out)


def layer_output_and_reference(conv: nn.Conv3d, weight, seed: int):
    """(our output feats, the dense float64 reference at the same sites) for conv on random sites;
    a transposed conv runs on the output of the strided conv that made its input."""
    g = torch.Generator().manual_seed(seed)
    feats, coords = random_input(g, 150, conv.in_channels)
    k, s = conv.kernel_size, conv.stride
    if not conv.transposed:
        x = pe.SparseTensor(feats, coords)
        out = conv(x)
        ref_coords, ref_feats = dense_conv_reference(feats, coords, weight, k, s)
        if s == (1, 1, 1):
            return out.feats, read_sites(ref_coords, ref_feats, coords)
        compare_to_reference(out.coords, out.feats, ref_coords, ref_feats)
        return out.feats, read_sites(ref_coords, ref_feats, out.coords)
    fine = pe.SparseTensor(torch.randn(len(coords), 2, generator=g, dtype=torch.float64), coords)
    down = torch.randn(8, 2, conv.in_channels, generator=g, dtype=torch.float64)
    coarse = pe.functional.conv3d(fine, down, kernel_size=2, stride=2)
    out = conv(coarse)
    ref_coords, ref_feats = dense_conv_transpose_reference(coarse.feats, coarse.coords, weight, k, s)
    return out.feats, read_sites(ref_coords, ref_feats, coords)


@pytest.mark.parametrize("layout", PEERS)
@pytest.mark.parametrize("layer", LAYERS)
def test_converted_layer_matches_the_dense_reference(layout, layer):
    kernel_size, stride, transposed = LAYERS[layer]
    per_offset, weight = random_layer(kernel_size, 3, 4, transposed, seed=1)
    build, key = PEERS[layout]
    conv = nn.Conv3d(3, 4, kernel_size, stride, transposed=transposed).double()
    report = load_checkpoint(conv, {key: build(per_offset, stride)}, layout=layout)
    assert report.layout == layout and [c.target for c in report.converted] == ["weight"]
    out, expected = layer_output_and_reference(conv, weight, seed=2)
    assert relative_error(out, expected) <= RELATIVE_TOLERANCE[torch.float64]


@pytest.mark.parametrize(
    "layout,layer", [("torchsparse", "submanifold3"), ("minkowski", "submanifold3"), ("minkowski", "strided2")]
)
def test_the_offset_order_is_visible_to_the_reference(layout, layer):
    """The same peer kernel taken in our order instead (no conversion) fails the reference check:
    the layer tests above can tell the orders apart."""
    kernel_size, stride, transposed = LAYERS[layer]
    per_offset, weight = random_layer(kernel_size, 3, 4, transposed, seed=3)
    conv = nn.Conv3d(3, 4, kernel_size, stride).double()
    with torch.no_grad():
        conv.weight.copy_(PEERS[layout][0](per_offset, stride))
    out, expected = layer_output_and_reference(conv, weight, seed=4)
    assert relative_error(out, expected) > 0.05


def test_an_even_torchsparse_kernel_wider_than_two_is_refused():
    """TorchSparse centres an even size-4 axis at -1..2, ours spans 0..3: no reordering maps one to the other."""
    conv = nn.Conv3d(2, 3, 4, 2)
    with pytest.raises(ValueError, match=r"torchsparse kernel of size \(4, 4, 4\) covers offsets .* not convertible"):
        load_checkpoint(conv, {"kernel": torch.zeros(64, 2, 3)}, layout="torchsparse")


def test_torchsparse_2_1_strided_pointwise_kernel():
    """TorchSparse 2.1 keeps [1, C_in, C_out] for a 1x1x1 kernel with a stride, 1.x [C_in, C_out]."""
    kernel = torch.randn(3, 4)
    old, new = nn.Conv3d(3, 4, 1, 2), nn.Conv3d(3, 4, 1, 2)
    load_checkpoint(old, {"kernel": kernel})
    load_checkpoint(new, {"kernel": kernel.unsqueeze(0)})
    assert torch.equal(old.weight[0], kernel) and torch.equal(new.weight[0], kernel)


# --- whole networks -----------------------------------------------------------------------------------

CR, CLASSES = 0.25, 5


def small_model(cr: float = CR, seed: int = 0) -> MinkUNet:
    """A MinkUNet with random weights and BatchNorm statistics, in eval mode."""
    torch.manual_seed(seed)
    model = MinkUNet(4, CLASSES, cr)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, torch.nn.BatchNorm1d):
                module.weight.uniform_(0.5, 1.5)
                module.bias.uniform_(-0.2, 0.2)
                module.running_mean.uniform_(-0.2, 0.2)
                module.running_var.uniform_(0.5, 1.5)
                module.num_batches_tracked.fill_(seed + 7)
    return model.eval()


def logits(model, seed: int = 5):
    g = torch.Generator().manual_seed(seed)
    coords = random_sites(400, 2, 16, g, low=-8)
    with torch.no_grad():
        return model(pe.SparseTensor(torch.randn(len(coords), 4, generator=g), coords)).feats


def same_parameters(model, source) -> bool:
    """Every parameter and buffer of `source` (a MinkUNet) is bitwise equal in `model`."""
    ours = model.state_dict()
    return all(
        torch.equal(ours[name], value)
        for name, value in source.state_dict().items()
        if not name.endswith("_extra_state")
    )


def per_offset_of(conv: nn.Conv3d, weight):
    """Our [K, C_in, C_out] weight as per_offset [kx, ky, kz, C_in, C_out] (our layout: x slowest)."""
    return weight.reshape(*conv.kernel_size, conv.in_channels, conv.out_channels)


def peer_tensors(model, layout: str):
    """(our parameter name, its tensor in `layout`, our module) for every entry of model's state dict
    (extra state left out), in our registration order."""
    build, _ = PEERS[layout]
    for name, value in model.state_dict().items():
        if name.endswith("_extra_state"):
            continue
        module = model.get_submodule(name.rpartition(".")[0])
        if isinstance(module, nn.Conv3d) and name.endswith(".weight"):
            value = build(per_offset_of(module, value), module.stride[0])
        yield name, value, module


# SPVNAS's core/models/semantic_kitti/minkunet.py names (stem a flat Sequential, conv blocks `net`,
# residual blocks `net` + `downsample`, stage i, up i = [deconvolution block, residual blocks],
# classifier Sequential(Linear)), from ours.
SPVNAS_NAMES = [
    (r"^stem\.(\d)\.(\d)\.", lambda m: f"stem.{3 * int(m[1]) + int(m[2])}."),
    (r"^down\.(\d)\.0\.", lambda m: f"stage{int(m[1]) + 1}.0.net."),
    (r"^down\.(\d)\.(\d)\.main\.", lambda m: f"stage{int(m[1]) + 1}.{m[2]}.net."),
    (r"^down\.(\d)\.(\d)\.shortcut\.", lambda m: f"stage{int(m[1]) + 1}.{m[2]}.downsample."),
    (r"^up\.(\d)\.", lambda m: f"up{int(m[1]) + 1}.0.net."),
    (r"^up_blocks\.(\d)\.(\d)\.main\.", lambda m: f"up{int(m[1]) + 1}.1.{m[2]}.net."),
    (r"^up_blocks\.(\d)\.(\d)\.shortcut\.", lambda m: f"up{int(m[1]) + 1}.1.{m[2]}.downsample."),
    (r"^classifier\.", lambda m: "classifier.0."),
]
SPVNAS_TOP = [
    "stem", *(f"stage{i}" for i in range(1, 5)), *(f"up{i}" for i in range(1, 5)), "classifier", "point_transforms"
]


def spvnas_name(name: str) -> str:
    for pattern, replace in SPVNAS_NAMES:
        if re.match(pattern, name):
            return re.sub(pattern, replace, name)
    raise AssertionError(f"no SPVNAS name for {name}")


def point_transforms(cr: float, seed: int) -> dict:
    """SPVNAS's point_transforms: three Linear + BatchNorm1d (+ ReLU) from width 0 to 4, 4 to 6, 6 to 8."""
    g = torch.Generator().manual_seed(seed)
    w = [int(cr * c) for c in WIDTHS]
    state = {}
    for i, (a, b) in enumerate([(w[0], w[4]), (w[4], w[6]), (w[6], w[8])]):
        state[f"point_transforms.{i}.0.weight"] = torch.randn(b, a, generator=g)
        state[f"point_transforms.{i}.0.bias"] = torch.randn(b, generator=g)
        for stat in ("weight", "bias", "running_mean", "running_var"):
            state[f"point_transforms.{i}.1.{stat}"] = torch.rand(b, generator=g) + 0.5
        state[f"point_transforms.{i}.1.num_batches_tracked"] = torch.tensor(3)
    return state


def spvnas_state(model: MinkUNet, cr: float = CR) -> dict:
    """The state dict SPVNAS's MinkUNet (TorchSparse 1.x) holds for model's weights, in SPVNAS's
    registration order, point_transforms included."""
    entries = []
    for position, (name, value, module) in enumerate(peer_tensors(model, "torchsparse")):
        theirs = spvnas_name(name)
        if isinstance(module, nn.Conv3d):
            theirs = theirs.removesuffix(".weight") + ".kernel"
        top, part = theirs.split(".")[:2]
        entries.append(((SPVNAS_TOP.index(top), int(part) if top.startswith("up") else 0, position), theirs, value))
    state = {name: value for _, name, value in sorted(entries, key=lambda e: e[0])}
    return state | point_transforms(cr, seed=9)


def minkowski_state(model: MinkUNet) -> dict:
    """MinkowskiEngine modules with our names: MinkowskiConvolution.kernel, MinkowskiBatchNorm's
    wrapped `.bn`, MinkowskiLinear's wrapped `.linear`."""
    state = {}
    for name, value, module in peer_tensors(model, "minkowski"):
        prefix, _, local = name.rpartition(".")
        if isinstance(module, nn.Conv3d):
            state[f"{prefix}.kernel"] = value
        elif isinstance(module, torch.nn.BatchNorm1d):
            state[f"{prefix}.bn.{local}"] = value
        else:
            state[f"{prefix}.linear.{local}"] = value
    return state


def spconv_state(model: MinkUNet) -> dict:
    """spconv modules with our names: conv weights [C_out, kx, ky, kz, C_in], torch BatchNorm1d and Linear."""
    return {name: value for name, value, _ in peer_tensors(model, "spconv")}


@pytest.fixture(scope="module")
def source() -> MinkUNet:
    return small_model(seed=0)


@pytest.fixture(scope="module")
def source_logits(source):
    return logits(source)


@pytest.mark.parametrize(
    "layout,make_state", [("torchsparse", spvnas_state), ("minkowski", minkowski_state), ("spconv", spconv_state)]
)
def test_whole_minkunet_through_each_peer_layout(layout, make_state, source, source_logits):
    target = small_model(seed=1)
    assert not torch.equal(target.stem[0][0].weight, source.stem[0][0].weight)
    report = load_checkpoint(target, make_state(source))
    assert report.layout == layout and report.config is None
    assert torch.equal(logits(target), source_logits) and same_parameters(target, source)
    assert len(report.converted) == sum(1 for name in source.state_dict() if not name.endswith("_extra_state"))


def test_spvnas_zoo_file_point_transforms_dropped(tmp_path, source):
    """A zoo-style file: torch.save({"model": state}) from DataParallel (`module.`), read with
    weights_only; the unused point_transforms are dropped and said so."""
    state = spvnas_state(source)
    path = tmp_path / "init"
    torch.save({"model": {f"module.{k}": v for k, v in state.items()}, "epoch": 12}, path)
    target = small_model(seed=1)
    report = load_checkpoint(target, path)
    assert report.layout == "torchsparse"
    assert same_parameters(target, source)
    assert [d.source for d in report.dropped] == [k for k in state if k.startswith("point_transforms.")]
    assert all("never uses" in d.reason for d in report.dropped)
    assert "dropped point_transforms.0.0.weight [64, 8]" in str(report)
    stem = next(c for c in report.converted if c.target == "stem.0.0.weight")
    assert stem.source == "stem.0.kernel" and "reordered" in stem.change


def spvcnn_reference(source: MinkUNet, state: dict) -> SPVCNN:
    """The SPVCNN that an SPVNAS SPVCNN file made from `source` and `state`'s point_transforms holds,
    loaded directly in our layout."""
    reference = SPVCNN(4, CLASSES, CR).eval()
    point = {name: value for name, value in state.items() if name.startswith("point_transforms.")}
    reference.load_state_dict(source.state_dict() | point)
    return reference


def test_spvnas_spvcnn_file_loads_whole(source):
    """An SPVNAS SPVCNN checkpoint: the voxel branch converted, the point transforms kept; the loaded
    model labels points exactly as the model the file was made from."""
    state = spvnas_state(source)
    reference = spvcnn_reference(source, state)
    torch.manual_seed(1)
    target = SPVCNN(4, CLASSES, CR).eval()
    report = load_checkpoint(target, state)
    assert report.layout == "torchsparse" and report.dropped == ()
    assert same_parameters(target, reference)
    g = torch.Generator().manual_seed(6)
    sites = random_sites(300, 2, 16, g, low=-8).float()
    inside = torch.rand(len(sites), 4, generator=g) * torch.tensor([0.0, 1, 1, 1])  # batch column kept
    points = pe.PointTensor(torch.randn(len(sites), 4, generator=g), sites + inside)
    with torch.no_grad():
        assert torch.equal(target(points).feats, reference(points).feats)


# --- our own files ----------------------------------------------------------------------------------------


def test_save_load_round_trip(tmp_path):
    source = small_model(seed=0)
    source.stem[0][0].dataflow = "gather_scatter"
    config = {"model": "minkunet", "in_channels": 4, "num_classes": CLASSES, "cr": CR, "labels": ["a", "b"]}
    path = save_checkpoint(source, tmp_path / "model.safetensors", config)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.safetensors"]
    with safetensors.safe_open(path, framework="pt") as file:
        assert json.loads(file.metadata()["config"]) == config
    target = small_model(seed=1)
    report = load_checkpoint(target, path)
    assert report.layout == "pointengine" and report.config == config and report.dropped == ()
    assert target.stem[0][0].dataflow == "gather_scatter"
    assert torch.equal(logits(target), logits(source)) and same_parameters(target, source)


def test_pt_file_of_our_state_dict(tmp_path, source):
    torch.save(source.state_dict(), tmp_path / "model.pt")
    target = small_model(seed=1)
    assert load_checkpoint(target, tmp_path / "model.pt").layout == "pointengine"
    assert same_parameters(target, source)


class _Payload:
    """Unpickling this creates the marker file: code that a weights_only load must never run."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return Path.touch, (self.marker,)


def test_pickled_code_is_refused(tmp_path):
    live = tmp_path / "live.pt"
    torch.save({"model": {"weight": _Payload(tmp_path / "ran_when_trusted")}}, live)
    torch.load(live, weights_only=False)
    assert (tmp_path / "ran_when_trusted").exists()
    path = tmp_path / "evil.pt"
    torch.save({"model": {"weight": _Payload(tmp_path / "ran")}}, path)
    with pytest.raises(ValueError, match="weights_only=True"):
        load_checkpoint(small_model(), path)
    assert not (tmp_path / "ran").exists()


def test_save_writes_nothing_partial(tmp_path, monkeypatch):
    model = small_model()
    with pytest.raises(ValueError, match="config must be JSON-serialisable"):
        save_checkpoint(model, tmp_path / "a.safetensors", {"voxel_size": torch.tensor(0.05)})
    with pytest.raises(ValueError, match="config must be a dict"):
        save_checkpoint(model, tmp_path / "a.safetensors", "minkunet")
    path = save_checkpoint(model, tmp_path / "b.safetensors", {"version": 1})
    before = path.read_bytes()

    def fail(*args):
        raise OSError("disk full")

    monkeypatch.setattr("os.replace", fail)
    with pytest.raises(OSError, match="disk full"):
        save_checkpoint(small_model(seed=3), path, {"version": 2})
    assert sorted(p.name for p in tmp_path.iterdir()) == ["b.safetensors"] and path.read_bytes() == before


# --- checkpoints that do not fit --------------------------------------------------------------------------


def test_another_width_lists_the_mismatched_parameters():
    target = small_model(cr=0.5, seed=1)
    before = target.stem[0][0].weight.clone()
    with pytest.raises(ValueError) as err:
        load_checkpoint(target, spvnas_state(small_model(seed=0)))
    message = str(err.value)
    assert "checkpoint does not fit MinkUNet (torchsparse layout" in message
    expected = "stem.0.0.weight [27, 4, 16] <- stem.0.kernel [27, 4, 8] (a torchsparse kernel of this layer is "
    assert expected + "[27, 4, 16])" in message
    assert torch.equal(target.stem[0][0].weight, before)
    with pytest.raises(ValueError, match=r"stem\.0\.0\.weight \[27, 4, 16\] <- stem\.0\.0\.weight \[27, 4, 8\]"):
        load_checkpoint(target, small_model(seed=0).state_dict())


def test_another_class_count_is_the_one_mismatch():
    target = MinkUNet(4, 19, CR)
    with pytest.raises(ValueError) as err:
        load_checkpoint(target, spvnas_state(small_model()))
    assert str(err.value).endswith(
        "(1):\n  classifier.weight [19, 24], classifier.bias [19] <- classifier.0.weight [5, 24], classifier.0.bias [5]"
    )


def test_another_architecture_lists_missing_and_leftover_parameters(tmp_path):
    path = save_checkpoint(small_model(), tmp_path / "minkunet.safetensors", {})
    with pytest.raises(ValueError, match=r"missing point_transforms\.0\.0\.weight \[64, 8\]"):
        load_checkpoint(SPVCNN(4, CLASSES, CR), path)
    stem_only = torch.nn.Sequential(nn.Conv3d(4, 8, 3), nn.BatchNorm(8))
    with pytest.raises(ValueError) as err:
        load_checkpoint(stem_only, spvnas_state(small_model()))
    assert "leftover stem.3.kernel [27, 8, 8]" in str(err.value) and "... and" in str(err.value)


def test_bad_sources_are_refused(tmp_path):
    model = small_model()
    with pytest.raises(ValueError, match="layout must be None or one of"):
        load_checkpoint(model, {}, layout="tensorflow")
    with pytest.raises(ValueError, match="source must be a path or a state dict, got int"):
        load_checkpoint(model, 3)
    with pytest.raises(ValueError, match="does not exist"):
        load_checkpoint(model, tmp_path / "none.pt")
    (tmp_path / "notes.txt").write_text("not a checkpoint")
    with pytest.raises(ValueError, match="neither safetensors nor a torch.save file"):
        load_checkpoint(model, tmp_path / "notes.txt")
    with pytest.raises(ValueError, match=r"expected a state dict .* got keys \['epoch', 'optimizer'\]"):
        load_checkpoint(model, {"epoch": 3, "optimizer": {"lr": 0.1}})


# --- spconv's own forward ------------------------------------------------------------------------------


def test_spconv_modules_match_their_own_forward(restore_threads):
    """Weights of real spconv layers, converted, give spconv's own outputs (its CPU build races with
    more than one thread, so it runs single-threaded)."""
    sp = pytest.importorskip("spconv.pytorch")
    torch.set_num_threads(1)
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(6)
    coords = random_sites(300, 2, 12, g, low=0)
    feats = torch.randn(len(coords), 3, generator=g)
    theirs_in = sp.SparseConvTensor(feats, coords, [12, 12, 12], 2)
    ours_in = pe.SparseTensor(feats, coords)
    layers = {
        "subm3": (sp.SubMConv3d(3, 5, 3, bias=False), nn.Conv3d(3, 5, 3)),
        "subm1": (sp.SubMConv3d(3, 5, 1, bias=False), nn.Conv3d(3, 5, 1)),
        "down2": (sp.SparseConv3d(3, 5, 2, 2, bias=False, indice_key="down"), nn.Conv3d(3, 5, 2, 2)),
    }
    outputs = {}
    for name, (theirs, ours) in layers.items():
        load_checkpoint(ours, theirs.state_dict())
        outputs[name] = (theirs(theirs_in), ours(ours_in))
    theirs_up = sp.SparseInverseConv3d(5, 4, 2, bias=False, indice_key="down")
    ours_up = nn.Conv3d(5, 4, 2, 2, transposed=True)
    assert load_checkpoint(ours_up, theirs_up.state_dict()).layout == "spconv"
    down_theirs, down_ours = outputs["down2"]
    outputs["up2"] = (theirs_up(down_theirs), ours_up(down_ours))
    for name, (theirs, ours) in outputs.items():
        expected = read_sites(theirs.indices, theirs.features, ours.coords)
        assert len(theirs.indices) == ours.num_sites, name
        assert relative_error(ours.feats, expected) <= RELATIVE_TOLERANCE[torch.float32], name
