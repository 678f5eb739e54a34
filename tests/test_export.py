"""torch.export and torch.compile of whole models: the exported program (saved, loaded back, run on
scans of other sizes) and the compiled model (one graph, no graph break, no recompile across sizes
with dynamic=True) compute what the module computes."""

import itertools

import pytest
import torch

import pointengine as pe
from pointengine.cli import main
from pointengine.functional import kernel_offsets
from pointengine.functional.kmap import tiles_stride
from pointengine.models import SPVCNN, MinkUNet
from pointengine.testing import random_sites, randomize_batchnorm, relative_error


def scan(n: int, seed: int, channels: int = 4) -> pe.SparseTensor:
    gen = torch.Generator().manual_seed(seed)
    coords = random_sites(n, 2, 40, gen)
    return pe.SparseTensor(torch.randn(len(coords), channels, generator=gen), coords)


MODELS = {
    "minkunet": lambda: MinkUNet(4, 7, cr=0.25),
    "minkunet optimized": lambda: pe.optimize(randomize_batchnorm(MinkUNet(4, 7, cr=0.25))),
    "spvcnn": lambda: SPVCNN(4, 7, cr=0.25),
    "minkunet int8": lambda: pe.compress.quantize(randomize_batchnorm(MinkUNet(4, 7, cr=0.25)), [scan(1200, seed=4)]),
    "minkunet bf16": lambda: pe.compress.quantize(randomize_batchnorm(MinkUNet(4, 7, cr=0.25)), [scan(1200, seed=4)], "bf16"),
}


@pytest.mark.parametrize("name", MODELS)
def test_exported_program_loads_back_and_equals_the_module(name, tmp_path):
    torch.manual_seed(0)
    model = randomize_batchnorm(MODELS[name]()).eval()
    path = tmp_path / "model.pt2"
    pe.compress.export_model(model, scan(1500, seed=1), path)
    program = torch.export.load(path).module()
    for n, seed in ((2500, 2), (900, 3)):  # other sizes than the traced one
        x = scan(n, seed)
        with torch.no_grad():
            expected = model(pe.SparseTensor(x.feats, x.coords)).feats
            out = program(x.feats, x.coords)
        assert out.shape == expected.shape
        assert relative_error(out, expected) <= 1e-6
        assert torch.equal(out.argmax(1), expected.argmax(1))


def test_export_refuses_bad_examples():
    model = MinkUNet(4, 7, cr=0.25).eval()
    with pytest.raises(TypeError, match="example must be a SparseTensor, got Tensor"):
        pe.compress.export_model(model, torch.zeros(3, 4))
    with pytest.raises(ValueError, match="example must have at least 2 sites"):
        pe.compress.export_model(model, scan(1, seed=0))


def test_compiled_model_has_one_graph_and_no_recompile_across_sizes(monkeypatch):
    torch._dynamo.reset()
    monkeypatch.setattr(torch._dynamo.config, "error_on_recompile", True)
    torch.manual_seed(0)
    model = pe.compress.PlainTensorModel(randomize_batchnorm(MinkUNet(4, 7, cr=0.25)).eval())
    # aot_eager: dynamo and AOT autograd as inductor sees them, without compiling C++ in the test.
    compiled = torch.compile(model, fullgraph=True, dynamic=True, backend="aot_eager")
    for n, seed in ((1200, 4), (2000, 5), (3100, 6)):
        x = scan(n, seed)
        with torch.no_grad():
            assert relative_error(compiled(x.feats, x.coords), model(x.feats, x.coords)) <= 1e-5
    torch._dynamo.reset()


@pytest.mark.parametrize("kernel_size, dilation, stride", list(itertools.product([1, 2, 3, 4], [1, 2], [1, 2, 3, 4])))
def test_tiles_stride_is_whether_the_offsets_are_0_to_s_minus_1(kernel_size, dilation, stride):
    offsets = kernel_offsets((kernel_size, 2, 1), (dilation, 1, 1))
    axes = [sorted(set(offsets[:, d].tolist())) for d in range(3)]
    expected = all(axis == list(range(s)) for axis, s in zip(axes, (stride, 2, 1)))
    assert tiles_stride((kernel_size, 2, 1), (dilation, 1, 1), (stride, 2, 1)) == expected


def test_the_export_command_writes_a_program_that_loads(tmp_path, capsys):
    out = tmp_path / "demo.pt2"
    assert main(["export", "--optimize", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert f"wrote {out} (optimized demo" in printed and "it gives the module's label on" in printed
    program = torch.export.load(out).module()
    x = scan(800, seed=7)
    with torch.no_grad():
        expected = pe.optimize(pe.Segmenter().model)(pe.SparseTensor(x.feats, x.coords)).feats
        assert torch.equal(program(x.feats, x.coords).argmax(1), expected.argmax(1))


def test_the_exported_program_refuses_bad_input(tmp_path):
    model = MinkUNet(4, 7, cr=0.25).eval()
    path = tmp_path / "model.pt2"
    pe.compress.export_model(model, scan(600, seed=8), path)
    program = torch.export.load(path).module()
    x = scan(700, seed=9)
    nan = x.feats.clone()
    nan[5, 1] = float("nan")
    with pytest.raises(RuntimeError, match="feats contains NaN or inf values"):
        program(nan, x.coords)
    repeated = torch.cat([x.coords, x.coords[:3]])
    with pytest.raises(RuntimeError, match="coords has duplicate rows"):
        program(torch.cat([x.feats, x.feats[:3]]), repeated)
    far = x.coords.clone()
    far[0, 1] = 40000
    with pytest.raises(RuntimeError, match=r"1 rows of coords lie outside the packable range"):
        program(x.feats, far)
