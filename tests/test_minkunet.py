"""MinkUNet: published size, zoo configs, forward on random sites (shape, sites of every stage,
bitwise determinism, gradients), and MAC counting against brute-force kernel pairs."""

import pytest
import torch

import pointengine as pe
from pointengine import nn
from pointengine.models import MinkUNet, available, build_model
from pointengine.profiler import count_macs, profile
from pointengine.testing import all_offsets, brute_force_pairs, random_sites, randomize_batchnorm

# SPVNAS (Tang et al., ECCV 2020), Table 1: MinkowskiNet on SemanticKITTI, 21.7 M parameters.
PUBLISHED_PARAMETERS_M = 21.7


def scan(n=1500, channels=4, seed=0) -> pe.SparseTensor:
    """Random sites in two batches, spread enough that all four down stages keep several sites."""
    gen = torch.Generator().manual_seed(seed)
    coords = random_sites(n, 2, 24, gen, low=-12)
    return pe.SparseTensor(torch.randn(len(coords), channels, generator=gen), coords)


def test_parameter_count_matches_the_published_size():
    count = sum(p.numel() for p in build_model("minkunet_cr1.0").parameters())
    assert round(count / 1e6, 1) == PUBLISHED_PARAMETERS_M


def test_zoo_configs():
    assert {"minkunet_cr0.5", "minkunet_cr1.0"} <= set(available())
    half = build_model("minkunet_cr0.5")
    assert isinstance(half, MinkUNet) and half.classifier.in_features == 48 and half.classifier.out_features == 19


def test_build_from_a_path(tmp_path):
    path = tmp_path / "tiny.yaml"
    path.write_text("architecture: minkunet\ncr: 0.25\ndataset: semantickitti\nvoxel_size: 0.1\nquantization: floor\n"
                    "reduce: mean\nfeatures: [x, y, z]\nfeature_scale: [1, 1, 1]\n")
    model = build_model(path)
    assert model.stem[0][0].in_channels == 3 and model.classifier.out_features == 19 and model.widths[0] == 8


def test_bad_configs_are_rejected():
    with pytest.raises(ValueError, match="unknown model 'minkunet_cr9'"):
        build_model("minkunet_cr9")
    with pytest.raises(ValueError, match="leaves a stage with no channels"):
        MinkUNet(cr=0.01)


@pytest.fixture(scope="module")
def half_model() -> MinkUNet:
    torch.manual_seed(0)
    return randomize_batchnorm(build_model("minkunet_cr0.5").eval())


def test_forward_gives_logits_on_the_input_sites(half_model):
    x = scan()
    with torch.no_grad():
        out = half_model(x)
    assert out.coordinate_map is x.coordinate_map and out.stride == (1, 1, 1)
    assert out.feats.shape == (x.num_sites, 19) and bool(torch.isfinite(out.feats).all())


def test_forward_is_bitwise_deterministic(half_model):
    with torch.no_grad():
        first = half_model(scan()).feats
        second = half_model(scan()).feats
    assert torch.equal(first, second)


def test_up_stages_return_the_skip_sites(half_model):
    outputs = {}
    stages = [half_model.stem, *half_model.down, *half_model.up]
    handles = [
        stage.register_forward_hook(lambda m, i, o, j=j: outputs.setdefault(j, o)) for j, stage in enumerate(stages)
    ]
    with torch.no_grad():
        half_model(scan())
    for handle in handles:
        handle.remove()
    levels = [outputs[j] for j in range(5)]  # stem and down1..4: strides 1, 2, 4, 8, 16
    assert [t.stride[0] for t in levels] == [1, 2, 4, 8, 16]
    assert all(t.num_sites > 1 for t in levels)
    for i in range(4):
        up, skip = outputs[5 + i], levels[3 - i]
        assert up.coordinate_map is skip.coordinate_map and up.stride == skip.stride


def test_gradients_flow_to_every_parameter():
    torch.manual_seed(0)
    model = MinkUNet(in_channels=4, num_classes=5, cr=0.25).train()
    x = scan(n=400)
    target = torch.randint(0, 5, (x.num_sites,))
    loss = torch.nn.functional.cross_entropy(model(x).feats, target)
    loss.backward()
    for name, param in model.named_parameters():
        assert param.grad is not None and bool(torch.isfinite(param.grad).all()), name
        assert param.grad.abs().sum() > 0, name


def test_count_macs_matches_brute_force_pairs():
    x = scan(n=300, channels=3)
    model = torch.nn.Sequential(nn.Conv3d(3, 4, 3), nn.BatchNorm(4), nn.ReLU(), nn.Conv3d(4, 5, 2, 2)).eval()
    with torch.no_grad():
        coarse = model(pe.SparseTensor(x.feats, x.coords)).coords
    sub = brute_force_pairs(x.coords, x.coords, torch.tensor(all_offsets((3, 3, 3), (1, 1, 1))), (1, 1, 1))
    down = brute_force_pairs(x.coords, coarse, torch.tensor(all_offsets((2, 2, 2), (1, 1, 1))), (2, 2, 2))
    assert count_macs(model, x) == len(sub) * 3 * 4 + len(down) * 4 * 5


def test_profile_rows_in_call_order():
    x = scan(n=300)
    model = torch.nn.Sequential(nn.Conv3d(4, 8, 3), nn.ReLU(), torch.nn.Identity())
    head = torch.nn.Linear(8, 3)
    rows = profile(torch.nn.Sequential(model, _Feats(), head), x, repeats=1, end_to_end=False, peaks=False).layers
    assert [(r.name, r.kind) for r in rows] == [
        ("0.0", "submanifold"),
        ("0.1", "other"),
        ("0.2", "other"),
        ("1", "other"),
        ("2", "linear"),
    ]
    assert rows[0].pairs > x.num_sites and rows[0].macs == rows[0].pairs * 4 * 8
    assert rows[-1].macs == x.num_sites * 8 * 3


class _Feats(torch.nn.Module):
    def forward(self, input: pe.SparseTensor) -> torch.Tensor:
        return input.feats
