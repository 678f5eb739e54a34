"""Segmenter: the pipeline a config describes (quantization, first-point features, scaling), one label per
point, a batch of scans labelled as one scan at a time, and clear errors for bad points."""

import warnings

import numpy as np
import pytest
import torch

from pointengine import Segmenter
from pointengine.datasets import generate_scan
from pointengine.functional import voxelize_points
from pointengine.models import load_model_config


def small_scan(seed: int, n: int = 3000, columns: int = 4) -> torch.Tensor:
    """Points in a 40 m x 40 m x 4 m box; a third of them 1 cm from another point, so voxels hold several."""
    g = torch.Generator().manual_seed(seed)
    xyz = (torch.rand(n, 3, generator=g) - 0.5) * torch.tensor([40.0, 40.0, 4.0])
    xyz[: n // 3] = xyz[n // 3 : 2 * (n // 3)] + 0.01  # near-duplicates: voxels with several points
    extra = torch.rand(n, columns - 3, generator=g)
    return torch.cat([xyz, extra], 1)


@pytest.fixture(scope="module")
def seg():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return Segmenter("minkunet_cr0.5")


def test_untrained_weights_are_said_plainly():
    with pytest.warns(UserWarning, match="'minkunet_cr0.5' has no trained weights"):
        seg = Segmenter("minkunet_cr0.5")
    assert not seg.trained


def test_the_default_is_the_trained_demo_model():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        seg = Segmenter()
    assert seg.trained and seg.config.name == "demo"


def test_one_label_per_point(seg):
    points = small_scan(0)
    labels, logits = seg(points, return_logits=True)
    assert labels.dtype == torch.int64 and labels.shape == (len(points),)
    assert logits.shape == (len(points), 19)
    assert set(labels.unique().tolist()) <= set(seg.config.dataset.predicted_classes)  # never the ignored 0
    # labels index the training classes: logit column j is training id j + 1 in SemanticKITTI
    assert torch.equal(labels, logits.argmax(1) + 1)
    assert seg.class_names[1] == "car"


def test_untrained_weights_are_the_same_in_every_segmenter(seg):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        again = Segmenter("minkunet_cr0.5")
    points = small_scan(1)
    assert torch.equal(seg(points, return_logits=True)[1], again(points, return_logits=True)[1])


def test_a_batch_labels_as_one_scan_at_a_time(seg):
    scans = [small_scan(2), small_scan(3, n=1000), generate_scan(5, beams=16, azimuth_steps=512).points]
    together = seg(scans, return_logits=True)
    for scan, (labels, logits) in zip(scans, together):
        alone_labels, alone_logits = seg(scan, return_logits=True)
        assert torch.equal(labels, alone_labels)
        torch.testing.assert_close(logits, alone_logits, rtol=1e-6, atol=1e-6)


def test_numpy_and_torch_points_give_the_same_labels(seg):
    points = small_scan(4)
    assert torch.equal(seg(points.numpy()), seg(points))
    assert torch.equal(seg(points.double()), seg(points))


def test_spvnas_preprocessing_against_numpy(seg):
    """round(xyz / 0.05) minus the minimum, one voxel per distinct site, features of its first point."""
    points = small_scan(5, columns=5)  # an extra column the model does not read
    x = seg.preprocess(points)
    p = points.numpy()
    q = np.round(p[:, :3].astype(np.float64) / 0.05)
    q -= q.min(0)
    sites, first = np.unique(q.astype(np.int64), axis=0, return_index=True)
    order = np.lexsort(x.coords[:, 1:].numpy().T[::-1])  # our rows sorted by (x, y, z) to match np.unique
    assert np.array_equal(x.coords[order, 1:].numpy(), sites) and bool((x.coords[:, 0] == 0).all())
    assert np.array_equal(x.feats[order].numpy(), p[first, :4])


def test_floor_mean_and_feature_scaling():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        seg = Segmenter("minkunet_cr0.5_nuscenes")
    points = small_scan(6, columns=5) * torch.tensor([1.0, 1, 1, 255, 31])
    x = seg.preprocess(points)
    expected = voxelize_points(points[:, :4] / torch.tensor([1.0, 1, 1, 255]), 0.1, "first", quantization="round_shift")
    torch.testing.assert_close(x.feats, expected.feats[:, :4], rtol=1e-6, atol=0)
    demo = load_model_config("demo")
    assert (demo.quantization, demo.reduce) == ("floor", "mean")


@pytest.mark.parametrize(
    "points, message",
    [
        (torch.zeros(0, 4), r"points is empty"),
        (torch.tensor([[0.0, 1.0, float("nan"), 0.5]]), r"points contains NaN or inf"),
        (torch.zeros(5, 2), r"points must have shape \[N, >= 3\]"),
        (torch.zeros(5, 3), r"points: model 'minkunet_cr0.5' reads columns \['x', 'y', 'z', 'remission'\], got 3 columns"),
        (torch.zeros(5, 4, dtype=torch.int32), r"points must be floating point, got torch.int32"),
        (np.zeros((5, 4), dtype=np.int64), r"points must be floating point, got numpy int64"),
        (torch.tensor([[0.0, 0, 0, 0], [5000.0, 0, 0, 0]]), r"voxel coordinates must be in \[-32768, 32767\]"),
    ],
)
def test_bad_points(seg, points, message):
    with pytest.raises(ValueError, match=message):
        seg(points)


def test_bad_scan_in_a_batch_is_named(seg):
    with pytest.raises(ValueError, match=r"scan 1 contains NaN"):
        seg([small_scan(7), torch.full((3, 4), float("inf"))])
    with pytest.raises(TypeError, match=r"scan 0 must be a numpy array or a torch.Tensor, got list"):
        seg([[[0.0, 0.0, 0.0, 0.0]], torch.zeros(1, 4)])


@pytest.mark.parametrize("reduce", ["mean", "first", "max"])
@pytest.mark.parametrize("columns", [4, 5])
def test_channels_sharing_xyz_are_the_points_reduced_once(reduce, columns):
    """Input channels x, y, z (unscaled), remission: voxelize_scans reduces the x, y, z columns once for
    both roles, bit for bit the features of reducing [x, y, z, x, y, z, remission]; a wider scan too."""
    from pointengine.models.config import model_config_from_dict
    from pointengine.segment import voxelize_scans

    fields = load_model_config("demo").to_dict() | {"reduce": reduce}
    config = model_config_from_dict(fields, "demo", "test")
    points = small_scan(8, columns=columns)
    batch = voxelize_scans(config, [points])
    reference = voxelize_points(torch.cat([points[:, :3], points[:, :4]], 1), 0.1, reduce)
    assert torch.equal(batch.tensor.coords, reference.coords) and torch.equal(batch.inverse, reference.inverse)
    assert torch.equal(batch.tensor.feats, reference.feats[:, 3:])


def test_views_average_the_probabilities_of_turned_scans():
    """views=4 against its definition, computed here: each view's points turned about z with a numpy
    rotation matrix (float64), labelled one at a time, the class probabilities averaged per point."""
    scan = generate_scan(3, beams=16, azimuth_steps=512).points
    plain, averaged = Segmenter("demo"), Segmenter("demo", views=4)
    total = 0
    for k in range(4):
        angle = 2 * np.pi * k / 4
        rotation = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
        turned = scan.clone()
        turned[:, :2] = torch.from_numpy(scan[:, :2].double().numpy() @ rotation.T).float()
        total = total + plain(turned, return_logits=True)[1].softmax(1)
    labels, logits = averaged(scan, return_logits=True)
    torch.testing.assert_close(logits.exp(), total / 4, rtol=1e-5, atol=1e-6)
    expected = torch.tensor(plain.config.dataset.predicted_classes)[(total / 4).argmax(1)]
    assert (labels == expected).float().mean() > 0.999  # equal but where two classes tie to rounding
    assert torch.equal(Segmenter("demo", views=1)(scan), plain(scan))
    batch = averaged([scan, scan[:500]])
    assert torch.equal(batch[0], labels) and torch.equal(batch[1], averaged(scan[:500]))


@pytest.mark.parametrize("views", [0, -2, 1.5, True])
def test_views_must_be_a_positive_integer(views):
    with pytest.raises(ValueError, match="views must be a positive integer"):
        Segmenter("demo", views=views)
