"""`pointengine.train`: the loss falls, a resumed run equals an uninterrupted one bit for bit, two
processes equal one, and the pieces (schedule, augmentation, training state) on their own."""

import math

import pytest
import safetensors.torch
import torch

from pointengine.train import load_train_state, new_settings, train
from pointengine.train.augment import augment
from pointengine.train.data import epoch_batches, shard
from pointengine.train.schedule import learning_rate
from pointengine.train.state import STATE_FILE, WEIGHTS_FILE, TrainState, save_train_state

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def dataset(tiny_dataset):
    return tiny_dataset


def quiet(*_):
    pass


def weights(path):
    return safetensors.torch.load_file(str(path))


def test_loss_falls(tiny_config, dataset, tmp_path):
    settings = new_settings(tiny_config(), train_sequences=["00"], val_sequences=["01"], epochs=4,
                            batch_size=1, optimizer="adamw", lr=1e-2, warmup_epochs=0)
    records = train(settings, dataset, tmp_path / "run", progress=False, log=quiet)
    losses = [r.loss for r in records]
    assert all(b < a for a, b in zip(losses, losses[1:])) and losses[-1] < 0.8 * losses[0], losses
    assert 0 <= records[-1].val_miou <= 1
    assert records[-1].step == 8


class Interrupted(Exception):
    pass


def stop_after_first_epoch(line):
    if line.startswith("epoch 1/"):
        raise Interrupted


@pytest.mark.parametrize("architecture,optimizer", [("minkunet", "sgd"), ("spvcnn", "adamw")])
def test_resume_equals_uninterrupted(tiny_config, dataset, tmp_path, architecture, optimizer):
    """SGD's momentum and AdamW's moments and step counts come back; SPVCNN's dropout is seeded by step."""
    settings = new_settings(tiny_config(architecture), train_sequences=["00"], val_sequences=[],
                            epochs=2, batch_size=1, optimizer=optimizer, lr=0.02, warmup_epochs=0.5)
    train(settings, dataset, tmp_path / "whole", progress=False, log=quiet)
    with pytest.raises(Interrupted):
        train(settings, dataset, tmp_path / "parts", progress=False, log=stop_after_first_epoch)
    assert load_train_state(tmp_path / "parts").epochs_done == 1
    after_first = weights(tmp_path / "parts" / WEIGHTS_FILE)
    train(settings, dataset, tmp_path / "parts", resume=tmp_path / "parts", progress=False, log=quiet)
    whole, parts = weights(tmp_path / "whole" / WEIGHTS_FILE), weights(tmp_path / "parts" / WEIGHTS_FILE)
    assert whole.keys() == parts.keys()
    assert any(not torch.equal(parts[name], after_first[name]) for name in parts)  # the second epoch ran
    for name in whole:
        assert torch.equal(whole[name], parts[name]), name


def _float64_gradients(settings, data, world, lovasz_weight=0.0):
    """The gradients of one training step on 4 scans (world.rank's share of them) of a float64 model."""
    from pointengine.models import build_model
    from pointengine.train.data import LabelledFrames
    from pointengine.train.distributed import wrap_model
    from pointengine.train.loop import train_step

    config = settings.model_config()
    frames = LabelledFrames(data, ["00", "01"], config.dataset)
    torch.manual_seed(0)
    model = build_model(config).double()
    if hasattr(model, "dropout"):
        model.dropout.p = 0.0  # SPVCNN: its masks are drawn per process, so they cannot match
    network = wrap_model(model, world, torch.device("cpu"))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.0)
    scans = [frames.load_augmented(i, 0, 0) for i in shard([0, 1, 2, 2], world.rank, world.size)]
    train_step(lambda t: network(t.replace_feats(t.feats.double())), optimizer, config, scans, world,
               torch.device("cpu"), lovasz_weight=lovasz_weight)
    return {name: p.grad for name, p in model.named_parameters()}


def _gradient_runs(settings, spvcnn_settings):
    """The steps whose gradients two processes and one compare: name, settings, Lovász weight."""
    return (("minkunet", settings, 0.0), ("spvcnn", spvcnn_settings, 0.0), ("minkunet_lovasz", settings, 1.0))


def _one_rank(rank, world_size, init_file, settings, spvcnn_settings, data, out):
    from pointengine.train.distributed import World

    torch.distributed.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world_size)
    torch.set_num_threads(1)
    try:
        for name, each, lovasz_weight in _gradient_runs(settings, spvcnn_settings):
            gradients = _float64_gradients(each, data, World(rank, world_size), lovasz_weight)
            if rank == 0:
                safetensors.torch.save_file(gradients, str(out.parent / f"two_gradients_{name}.safetensors"))
        train(settings, data, out, progress=False, log=quiet)
    finally:
        torch.distributed.destroy_process_group()


def test_two_processes_equal_one(tiny_config, dataset, tmp_path):
    """Global batch 2 over 2 gloo ranks (a scan each) = one process at batch 2: BatchNorm over the
    global batch, the loss over its labelled points. In float64 the gradients of a step on 4 scans (2 per
    rank) agree to rounding, for MinkUNet (also with the per-scan Lovász term) and for SPVCNN (its point
    MLPs' BatchNorm1d too; no dropout);
    in float32, summation order differs between the two, and the runs stay within 1e-5, not bitwise, after
    one epoch (one step of the global batch): on this tiny set the difference grows fast, step by step
    (measured on an AVX2 EPYC, the one-process run with the fused BatchNorm kernel: 6e-8 after one,
    1.3e-5 after two, 3.7e-4 after three)."""
    from pointengine.train.distributed import World

    settings = new_settings(tiny_config(), train_sequences=["00"], val_sequences=["01"], epochs=1,
                            batch_size=2, optimizer="sgd", lr=0.05, warmup_epochs=0)
    spvcnn_settings = new_settings(tiny_config("spvcnn"), train_sequences=["00"])
    torch.multiprocessing.spawn(
        _one_rank, args=(2, tmp_path / "rendezvous", settings, spvcnn_settings, dataset, tmp_path / "two"), nprocs=2
    )
    single = {}
    for name, each, lovasz_weight in _gradient_runs(settings, spvcnn_settings):
        one_gradients = _float64_gradients(each, dataset, World(), lovasz_weight)
        two_gradients = safetensors.torch.load_file(str(tmp_path / f"two_gradients_{name}.safetensors"))
        assert one_gradients.keys() == two_gradients.keys()
        for key, grad in one_gradients.items():
            scale = max(1.0, float(grad.abs().max()))
            assert float((grad - two_gradients[key]).abs().max()) <= 1e-12 * scale, (name, key)
        single[name] = one_gradients
    assert any(not torch.equal(grad, single["minkunet_lovasz"][key]) for key, grad in single["minkunet"].items())

    train(settings, dataset, tmp_path / "one", progress=False, log=quiet)
    one, two = weights(tmp_path / "one" / WEIGHTS_FILE), weights(tmp_path / "two" / WEIGHTS_FILE)
    start = weights(_initial(settings, tmp_path))
    assert one.keys() == two.keys()
    moved = max(float((one[k].double() - start[k].double()).abs().max()) for k in one if one[k].is_floating_point())
    assert moved > 1e-3  # the runs did train
    for name in one:
        assert float((one[name].double() - two[name].double()).abs().max()) <= 1e-5, name


def _initial(settings, folder):
    """The seeded initial weights of `settings` (what both runs start from)."""
    from pointengine.models import build_model, save_checkpoint

    torch.manual_seed(settings.seed)
    path = folder / "initial.safetensors"
    save_checkpoint(build_model(settings.model_config()), path, {})
    return path


def test_learning_rate_warmup_then_cosine():
    base, warmup, total = 0.4, 4, 14
    assert [learning_rate(s, base, warmup, total) for s in range(4)] == pytest.approx([0.1, 0.2, 0.3, 0.4])
    assert learning_rate(4, base, warmup, total) == pytest.approx(0.4)
    assert learning_rate(9, base, warmup, total) == pytest.approx(0.2)  # halfway down the cosine
    assert learning_rate(14, base, warmup, total) == pytest.approx(0.0)
    assert learning_rate(0, base, 0, 10) == pytest.approx(base)


def test_augment_is_a_seeded_similarity():
    points = torch.randn(500, 4) * 10
    a = augment(points, seed=1, epoch=2, index=3)
    assert torch.equal(a, augment(points, seed=1, epoch=2, index=3))
    assert not torch.equal(a, augment(points, seed=1, epoch=3, index=3))
    assert torch.equal(a[:, 3], points[:, 3])
    # rotation, flips and scaling keep distances up to one factor; jitter moves each point <= 5 cm per axis
    d_in = torch.cdist(points[:50, :3].double(), points[50:100, :3].double())
    d_out = torch.cdist(a[:50, :3].double(), a[50:100, :3].double())
    ratio = float((d_out / d_in).median())
    assert 0.95 - 1e-3 <= ratio <= 1.05 + 1e-3
    assert float((d_out - ratio * d_in).abs().max()) <= 2 * math.sqrt(3) * 0.05 + 1e-4


def test_collate_equals_voxelizing_the_scans_together(dataset):
    """sparse_collate of scans voxelized alone = Segmenter's voxelization of the list (scan j at batch j)."""
    from pointengine.models import load_model_config
    from pointengine.segment import voxelize_scans
    from pointengine.train.data import LabelledFrames
    from pointengine.train.loop import collate

    config = load_model_config("minkunet_cr0.5")
    frames = LabelledFrames(dataset, ["00", "01"], config.dataset)
    points = [frames.load(i).points for i in range(3)]
    ours, theirs = collate(config, points, "cpu"), voxelize_scans(config, points)
    assert ours.point_counts == theirs.point_counts and ours.tensor.num_sites == theirs.tensor.num_sites
    for a, b in ((ours.tensor.coords, theirs.tensor.coords), (ours.tensor.feats, theirs.tensor.feats)):
        assert torch.equal(a.index_select(0, ours.inverse), b.index_select(0, theirs.inverse))


def test_batches_and_shards_cover_each_scan_once():
    batches = epoch_batches(10, 4, seed=0, epoch=1, world_size=3)
    assert [len(b) for b in batches] == [4, 4]  # the last batch of 2 cannot give 3 ranks a scan each
    flat = [i for b in batches for i in b]
    assert len(set(flat)) == 8 and set(flat) <= set(range(10))
    assert epoch_batches(10, 4, 0, 1, 3) == batches and epoch_batches(10, 4, 0, 2, 3) != batches
    for batch in batches:
        parts = [shard(batch, r, 3) for r in range(3)]
        assert sum(parts, []) == batch and all(parts)


def test_train_state_round_trip_without_pickle(tmp_path):
    model = torch.nn.Linear(3, 2)
    optimizer = torch.optim.AdamW(model.parameters(), lr=0.1)
    model(torch.randn(4, 3)).sum().backward()
    optimizer.step()
    save_train_state(tmp_path, TrainState(3, 17, {"seed": 5}, optimizer.state_dict()))
    state = load_train_state(tmp_path / STATE_FILE)
    assert (state.epochs_done, state.step, state.settings) == (3, 17, {"seed": 5})
    fresh = torch.optim.AdamW(torch.nn.Linear(3, 2).parameters(), lr=0.1)
    fresh.load_state_dict(state.optimizer)
    for key, saved in optimizer.state_dict()["state"].items():
        for name, value in saved.items():
            assert torch.equal(fresh.state_dict()["state"][key][name], value), name
    assert fresh.state_dict()["param_groups"] == optimizer.state_dict()["param_groups"]
    with pytest.raises(ValueError, match="no training state"):
        load_train_state(tmp_path / "elsewhere")


def test_class_weights_follow_the_shares_of_the_training_points():
    from pointengine.datasets import load_dataset_config
    from pointengine.train.data import class_weights

    config = load_dataset_config("semantickitti")
    counts = torch.zeros(config.num_classes, dtype=torch.int64)
    counts[0], counts[1], counts[9], counts[18] = 500, 10, 640, 250  # the ignored class 0 does not count
    assert class_weights(counts, 0.0, config) is None
    weights = class_weights(counts, 0.5, config).double()
    share = {1: 10 / 900, 9: 640 / 900, 18: 250 / 900}
    columns = {c: config.predicted_classes.index(c) for c in share}
    raw = {c: s**-0.5 for c, s in share.items()}
    scale = sum(share[c] * raw[c] for c in share)
    for c in share:
        assert weights[columns[c]].item() == pytest.approx(raw[c] / scale, rel=1e-6)
    assert sum(share[c] * weights[columns[c]].item() for c in share) == pytest.approx(1.0, rel=1e-6)
    assert int((weights != 0).sum()) == 3  # classes without points weigh nothing


class StepOnTwoScans:
    """An untrained model, two scans of the tiny set, their point logits before the step, the step's
    targets (logit columns, IGNORE where unlabelled) and a step that leaves the weights alone."""

    def __init__(self, tiny_config, dataset):
        from pointengine.models import build_model
        from pointengine.train.data import LabelledFrames, logit_targets
        from pointengine.train.loop import IGNORE, collate

        self.config = new_settings(tiny_config()).model_config()
        self.frames = LabelledFrames(dataset, ["00", "01"], self.config.dataset)
        self.scans = [self.frames.load(0), self.frames.load(2)]
        torch.manual_seed(0)
        self.model = build_model(self.config)
        batch = collate(self.config, [s.points for s in self.scans], "cpu")
        with torch.no_grad():
            self.logits = self.model(batch.tensor).feats.index_select(0, batch.inverse)
        self.point_counts = batch.point_counts
        self.targets = [logit_targets(s.labels, self.config.dataset, IGNORE) for s in self.scans]
        self.target = torch.cat(self.targets)

    def step(self, **options) -> float:
        from pointengine.train.distributed import World
        from pointengine.train.loop import train_step

        optimizer = torch.optim.SGD(self.model.parameters(), lr=0.0)
        return train_step(self.model, optimizer, self.config, self.scans, World(), "cpu", **options)


def test_weighted_step_reports_torchs_weighted_cross_entropy(tiny_config, dataset):
    from pointengine.train.data import class_weights
    from pointengine.train.loop import IGNORE

    run = StepOnTwoScans(tiny_config, dataset)
    weights = class_weights(run.frames.class_points, 0.5, run.config.dataset)
    expected = torch.nn.functional.cross_entropy(run.logits, run.target, weight=weights, ignore_index=IGNORE)
    unweighted = torch.nn.functional.cross_entropy(run.logits, run.target, ignore_index=IGNORE)
    loss = run.step(weights=weights)
    assert loss == pytest.approx(expected.item(), rel=1e-5)
    assert loss != pytest.approx(unweighted.item(), rel=1e-3)


def test_lovasz_step_adds_the_mean_of_each_scans_lovasz_loss(tiny_config, dataset):
    from pointengine.train.loop import IGNORE
    from pointengine.train.lovasz import lovasz_softmax

    run = StepOnTwoScans(tiny_config, dataset)
    per_scan = [lovasz_softmax(scan_logits[t != IGNORE], t[t != IGNORE])
                for scan_logits, t in zip(run.logits.split(run.point_counts), run.targets)]
    cross_entropy = torch.nn.functional.cross_entropy(run.logits, run.target, ignore_index=IGNORE).item()
    labelled = run.target != IGNORE
    expected = cross_entropy + 4.0 * (per_scan[0] + per_scan[1]).item() / 2
    whole_batch = cross_entropy + 4.0 * lovasz_softmax(run.logits[labelled], run.target[labelled]).item()
    loss = run.step(lovasz_weight=4.0)
    assert loss == pytest.approx(expected, rel=1e-5)
    assert loss != pytest.approx(whole_batch, rel=1e-4)
