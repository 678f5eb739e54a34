"""pointengine.tune: groups are the layers sharing kernel maps, each gets its group's fastest dataflow
(of what it measured; no timing asserted), 1x1 convs are left alone, the outputs do not change, and the
choices load back with the model (state dict and checkpoint file)."""

import pytest
import torch

import pointengine as pe
from pointengine import nn
from pointengine.functional.conv import DATAFLOWS, distinct_dataflows
from pointengine.models import MinkUNet, load_checkpoint, save_checkpoint
from pointengine.testing import random_sites, relative_error


def scan(n=300, seed=0, extent=10) -> pe.SparseTensor:
    gen = torch.Generator().manual_seed(seed)
    coords = random_sites(n, 2, extent, gen, low=-extent // 2)
    return pe.SparseTensor(torch.randn(len(coords), 4, generator=gen), coords)


class Net(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.sub1, self.sub2, self.point = nn.Conv3d(4, 8, 3), nn.Conv3d(8, 8, 3), nn.Conv3d(8, 8, 1)
        self.down, self.sub3 = nn.Conv3d(8, 16, 2, 2), nn.Conv3d(16, 16, 3)
        self.up, self.sub4 = nn.Conv3d(16, 8, 2, 2, transposed=True), nn.Conv3d(8, 8, 3)

    def forward(self, x: pe.SparseTensor) -> pe.SparseTensor:
        return self.sub4(self.up(self.sub3(self.down(self.point(self.sub2(self.sub1(x)))))))


def convs(model: torch.nn.Module) -> dict[str, str | None]:
    return {name: m.dataflow for name, m in model.named_modules() if isinstance(m, nn.Conv3d)}


def test_groups_are_the_layers_sharing_maps_and_each_gets_its_fastest():
    torch.manual_seed(0)
    model = Net().eval()
    result = pe.tune(model, [scan(seed=0), scan(seed=1)], repeats=1)
    # sub1, sub2 and sub4 read the stride-1 submanifold map; the others each have their own.
    assert [group.layers for group in result.groups] == [("sub1", "sub2", "sub4"), ("down",), ("sub3",), ("up",)]
    for group in result.groups:
        assert set(group.seconds) == set(distinct_dataflows(torch.device("cpu")))
        assert group.dataflow == min(group.seconds, key=group.seconds.get)
    assert convs(model) == {**result.dataflows, "point": None}


def test_candidates_can_be_chosen_and_outputs_do_not_change():
    torch.manual_seed(0)
    model = Net().eval()
    x = scan()
    with torch.no_grad():
        before = model(x).feats
    result = pe.tune(model, [(x,)], repeats=1, dataflows=("gather_scatter",))
    assert set(result.dataflows.values()) == {"gather_scatter"}
    with torch.no_grad():
        after = model(pe.SparseTensor(x.feats, x.coords)).feats
    assert relative_error(after, before) < 1e-5


def test_the_tuning_loads_back(tmp_path):
    x = scan(n=600, extent=16)
    for candidates in (None, ("gather_scatter",)):
        torch.manual_seed(0)
        model = MinkUNet(in_channels=4, num_classes=5, cr=0.25).eval()
        result = pe.tune(model, [x], repeats=1, dataflows=candidates)
        tuned = convs(model)
        assert {name: flow for name, flow in tuned.items() if flow is not None} == result.dataflows
        assert len(result.dataflows) == sum(1 for m in model.modules() if isinstance(m, nn.Conv3d) and m.weight.shape[0] > 1)

        fresh = MinkUNet(in_channels=4, num_classes=5, cr=0.25)
        fresh.load_state_dict(model.state_dict())
        assert convs(fresh) == tuned
        path = save_checkpoint(model, tmp_path / "tuned.safetensors", {"architecture": "minkunet"})
        fresh = MinkUNet(in_channels=4, num_classes=5, cr=0.25)
        load_checkpoint(fresh, path)
        assert convs(fresh) == tuned


@pytest.mark.cuda
def test_on_cuda_every_dataflow_is_timed():
    torch.manual_seed(0)
    model = Net().eval().cuda().half()
    x = scan()
    result = pe.tune(model, [pe.SparseTensor(x.feats.cuda().half(), x.coords.cuda())], repeats=1)
    assert all(set(group.seconds) == set(DATAFLOWS) for group in result.groups)
    assert convs(model) == {**result.dataflows, "point": None}


def test_bad_arguments():
    with pytest.raises(ValueError, match="at least one sample"):
        pe.tune(Net(), [])
    with pytest.raises(ValueError, match="non-empty selection of"):
        pe.tune(Net(), [scan()], dataflows=("fastest",))
    with pytest.raises(ValueError, match="repeats must be >= 1"):
        pe.tune(Net(), [scan()], repeats=0)
