"""The synthetic lidar: ray casting by hand, the sensor model (beam pattern, tilt, the car under the
sensor, weak beams, range noise, remission), the street layout (arcs, kerbs, junctions), the classes
a scan holds, determinism, and the dataset written on disk."""

import math

import numpy as np
import pytest
import torch

from pointengine.datasets import SemanticKITTI, generate_scan, objects, write_synthetic_dataset
from pointengine.datasets.layout import CARRIAGEWAY, FOOTWAY, LAND, Arm, Layout, draw_layout
from pointengine.datasets.raycast import Box, Cylinder, Ellipsoid, RangeImage
from pointengine.datasets.scene import Scene
from pointengine.datasets.sensor import BEAM_LOSS, BEAM_RANGE_BIAS, Pose, remission_of
from pointengine.datasets.synthetic import (
    BICYCLE, BICYCLIST, BUILDING, CAR, FENCE, GENERATED_IDS, MOTORCYCLE, MOTORCYCLIST, OTHER_VEHICLE, PARKING, PERSON,
    POLE, ROAD, SIDEWALK, TERRAIN, TRAFFIC_SIGN, TRUCK, TRUNK, VEGETATION, frame_seed, hdl64_elevations,
)
from pointengine.functional import voxelize_points

LEVEL = Pose(height=1.73, roll=0.0, pitch=0.0)


@pytest.fixture(scope="module")
def full_scan():
    return generate_scan(seed=0)


def beam_of(points: torch.Tensor, elevations: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(nearest beam, its elevation error in radians) of each point, from its coordinates alone."""
    xyz = points[:, :3].double().numpy()
    elevation = np.arctan2(xyz[:, 2], np.hypot(xyz[:, 0], xyz[:, 1]))
    gap = np.abs(elevation[:, None] - elevations[None, :])
    beam = gap.argmin(1)
    return beam, gap[np.arange(beam.size), beam]


# --- the whole scan ------------------------------------------------------------------------------


def test_full_scan_is_realistic_in_size(full_scan):
    points, labels = full_scan.points, full_scan.labels
    assert points.dtype == torch.float32 and points.shape[1] == 4 and labels.dtype == torch.int64
    assert 100_000 <= points.shape[0] <= 131_072  # a real scan has about 124k; at most one return per ray
    assert set(labels.unique().tolist()) <= set(GENERATED_IDS)
    assert {ROAD, SIDEWALK, VEGETATION} <= set(labels.unique().tolist())
    voxels = voxelize_points(points, 0.05)
    assert 70_000 <= voxels.coords.shape[0] <= 115_000  # a real scan has about 92k at 0.05 m
    remission = points[:, 3].double()
    assert float(remission.min()) >= 0 and float(remission.max()) < 1
    assert torch.allclose(remission * 100, (remission * 100).round(), atol=1e-4)  # steps of 0.01, as in KITTI
    distance = points[:, :3].norm(dim=1)
    assert float(distance.min()) >= 1.0 and float(distance.max()) <= 80.5


def test_deterministic_per_seed():
    one, two, other = (generate_scan(seed, beams=16, azimuth_steps=512) for seed in (7, 7, 8))
    assert torch.equal(one.points, two.points) and torch.equal(one.labels, two.labels)
    assert one.points.shape != other.points.shape or not torch.equal(one.points, other.points)


def test_rejects_bad_sensor():
    with pytest.raises(ValueError, match="beams and azimuth_steps must be >= 1"):
        generate_scan(beams=0)
    with pytest.raises(ValueError, match="need 0 < min_range < max_range"):
        generate_scan(min_range=50.0, max_range=40.0)
    with pytest.raises(ValueError, match=r"pose needs height > 0 .* got Pose\(height=-1.0"):
        generate_scan(pose=Pose(-1.0, 0.0, 0.0))
    with pytest.raises(ValueError, match="pose needs"):
        generate_scan(pose=Pose(1.7, 0.0, 0.6))
    with pytest.raises(ValueError, match="range_noise and range_bias must be >= 0, got 0.025 and -0.01"):
        generate_scan(range_bias=-0.01)
    with pytest.raises(ValueError, match="range_noise and range_bias must be >= 0, got nan"):
        generate_scan(range_noise=float("nan"))


def test_every_class_appears():
    """Every class the generator claims shows up: the vehicles, people and street furniture among the
    shapes of a few seeded streets; the ground classes and the common objects in the points of two scans."""
    built = set()
    for seed in range(9):
        rng = np.random.default_rng(seed)
        Pose.draw(rng)
        built |= {shape.label for shape in Scene(draw_layout(rng), rng, -1.73).shapes()}
    assert {CAR, BICYCLE, MOTORCYCLE, TRUCK, OTHER_VEHICLE, PERSON, BICYCLIST, MOTORCYCLIST, BUILDING, FENCE,
            VEGETATION, TRUNK, POLE, TRAFFIC_SIGN} <= built
    seen = set()
    for seed in (1, 3):
        seen |= set(generate_scan(seed, azimuth_steps=1024).labels.unique().tolist())
    assert {CAR, TRUCK, PERSON, BICYCLIST, ROAD, PARKING, SIDEWALK, BUILDING, FENCE, VEGETATION, TRUNK, TERRAIN, POLE,
            TRAFFIC_SIGN} <= seen


def _shape_labels(seed: int, rare: float) -> list[int]:
    rng = np.random.default_rng(seed)
    Pose.draw(rng)
    return [shape.label for shape in Scene(draw_layout(rng), rng, -1.73, rare).shapes()]


def test_rare_classes_come_more_often_when_asked():
    """`rare` 4 builds several times as many riders, parked two-wheelers, people, trucks, other
    vehicles and fences over the same streets as the default; out of range, it is refused."""
    rare_ids = {BICYCLE, MOTORCYCLE, TRUCK, OTHER_VEHICLE, PERSON, BICYCLIST, MOTORCYCLIST, FENCE}
    usual = [label for seed in range(12) for label in _shape_labels(seed, 1.0)]
    more = [label for seed in range(12) for label in _shape_labels(seed, 4.0)]
    for label in (BICYCLE, PERSON, TRUCK, FENCE):
        assert more.count(label) >= 2 * max(usual.count(label), 1), label
    assert sum(v in rare_ids for v in more) / len(more) > 2 * sum(v in rare_ids for v in usual) / len(usual)
    with pytest.raises(ValueError, match=r"rare must be in \(0, 10\], got 0"):
        generate_scan(rare=0.0)


# --- the sensor ----------------------------------------------------------------------------------


def test_hdl64_elevations():
    degrees = np.degrees(hdl64_elevations())
    assert degrees.shape == (64,) and degrees[0] == pytest.approx(2.0) and degrees[-1] == pytest.approx(-24.8)
    assert np.all(np.diff(degrees) < 0)
    assert np.allclose(np.degrees(hdl64_elevations(2)), [2.0, -24.8])
    assert np.allclose(np.diff(degrees[:32]), -1 / 3, atol=1e-3)  # the upper block, 1/3 deg apart


def test_calibrated_elevations_two_blocks_with_offsets():
    degrees = np.degrees(hdl64_elevations(calibrated=True))
    assert np.all(np.diff(degrees) < 0)
    upper, lower = np.diff(degrees[:32]), np.diff(degrees[32:])
    assert np.mean(upper) == pytest.approx(-1 / 3, abs=0.01) and np.mean(lower) == pytest.approx(-0.49, abs=0.02)
    even = np.concatenate([np.linspace(2.5, -7.8, 32), np.linspace(-8.4, -23.7, 32)])
    offsets = degrees - even
    assert 0.01 < np.std(offsets) < 0.1 and np.abs(offsets).max() < 0.2  # each beam a little off


def test_points_lie_on_the_beams():
    """Range noise moves a return along its ray only: every point's elevation, computed from its
    coordinates, is one of the calibrated beam elevations (level sensor)."""
    scan = generate_scan(4, beams=64, azimuth_steps=512, pose=LEVEL)
    _, error = beam_of(scan.points, hdl64_elevations(calibrated=True))
    assert error.max() < 1e-5


@pytest.mark.parametrize("roll, pitch", [(0.0, math.radians(2.0)), (math.radians(-1.5), 0.0)])
def test_tilt_moves_the_ground_as_computed_by_hand(roll, pitch):
    """With the sensor pitched nose-down by p, the road (height h below the sensor) lies in the sensor
    frame on z = (x sin p - h) / cos p; rolled left side up by r, on z = -(y sin r + h) / cos r."""
    height = 1.8
    scan = generate_scan(5, beams=32, azimuth_steps=512, range_noise=0.0, range_bias=0.0,
                         pose=Pose(height, roll, pitch))
    points = scan.points.double()[(scan.labels == ROAD) | (scan.labels == PARKING)]
    x, y, z = points[:, 0], points[:, 1], points[:, 2]
    expected = (x * math.sin(pitch) - y * math.sin(roll) * math.cos(pitch) - height) / (math.cos(pitch) * math.cos(roll))
    assert points.shape[0] > 1000 and float((z - expected).abs().max()) < 1e-3
    level = generate_scan(5, beams=32, azimuth_steps=512, range_noise=0.0, range_bias=0.0, pose=Pose(height, 0.0, 0.0))
    flat = level.points.double()[(level.labels == ROAD) | (level.labels == PARKING), 2]
    assert float((flat + height).abs().max()) < 1e-3


def test_the_car_under_the_sensor_hides_the_nearest_ground():
    """The lowest beam has no return straight behind (the car's roof and boot are in the way) but
    returns to the side; no return is nearer than the car's edge."""
    scan = generate_scan(6, beams=64, azimuth_steps=1024, pose=LEVEL)
    beam, _ = beam_of(scan.points, hdl64_elevations(calibrated=True))
    azimuth = np.arctan2(scan.points[:, 1].numpy(), scan.points[:, 0].numpy())
    lowest = beam == 63
    assert not np.any(lowest & (np.abs(azimuth) > math.radians(170)))
    assert np.sum(lowest & (np.abs(np.abs(azimuth) - math.pi / 2) < math.radians(10))) > 20


def test_weak_beams_return_fewer_points():
    """The unit's weak beams return about (1 - their extra loss) as many points as their neighbours."""
    weak = [b for b in np.nonzero(BEAM_LOSS)[0] if 0 < b < 40 and BEAM_LOSS[b - 1] == BEAM_LOSS[b + 1] == 0]
    assert weak
    counts = np.zeros(64)
    for seed in (1, 2):
        beam, _ = beam_of(generate_scan(seed, pose=LEVEL, azimuth_steps=1024, dropout=0.0).points,
                          hdl64_elevations(calibrated=True))
        counts += np.bincount(beam, minlength=64)
    ratio = counts[weak] / ((counts[np.array(weak) - 1] + counts[np.array(weak) + 1]) / 2)
    assert ratio == pytest.approx(1 - BEAM_LOSS[weak], abs=0.08)


def test_range_noise_grows_with_range():
    """The same street with and without range noise: the range errors are about `noise` near the
    sensor and twice that at 40 m."""
    quiet = generate_scan(3, beams=32, azimuth_steps=1024, range_noise=0.0, min_range=0.5)
    noisy = generate_scan(3, beams=32, azimuth_steps=1024, range_noise=0.05, min_range=0.5)
    assert torch.equal(quiet.labels, noisy.labels)
    distance = quiet.points[:, :3].double().norm(dim=1)
    error = noisy.points[:, :3].double().norm(dim=1) - distance
    near, far = error[(distance > 4) & (distance < 8)], error[(distance > 35) & (distance < 45)]
    assert float(near.std()) == pytest.approx(0.05 * (1 + 6 / 40), rel=0.1)
    assert float(far.std()) == pytest.approx(0.05 * 2, rel=0.15)


def test_each_beam_has_its_own_range_error():
    """Without range noise, every return of beam b lies BEAM_RANGE_BIAS[b] x range_bias further out
    along its ray than without the beam errors."""
    exact = generate_scan(4, azimuth_steps=1024, range_noise=0.0, range_bias=0.0, min_range=0.5)
    biased = generate_scan(4, azimuth_steps=1024, range_noise=0.0, range_bias=0.03, min_range=0.5)
    assert torch.equal(exact.labels, biased.labels)
    beam, _ = beam_of(exact.points, hdl64_elevations(calibrated=True))
    error = (biased.points[:, :3].double().norm(dim=1) - exact.points[:, :3].double().norm(dim=1)).numpy()
    assert np.abs(error - 0.03 * BEAM_RANGE_BIAS[beam]).max() < 2e-4
    assert 0.5 < BEAM_RANGE_BIAS.std() < 1.5 and np.unique(beam).size == 64


def test_remission_falls_at_grazing_incidence():
    rng = np.random.default_rng(0)
    cos = np.repeat([0.05, 0.3, 0.6, 1.0], 20_000)
    value = remission_of(np.full(cos.shape, 0.5), cos, np.full(cos.shape, 10.0), rng)
    means = value.reshape(4, -1).mean(1)
    assert np.all(np.diff(means) > 0.01)
    assert value.min() >= 0 and value.max() <= 0.99
    assert np.allclose(value * 100, np.round(value * 100))
    # a dark, grazing, far surface returns an echo too weak to measure: remission 0, as in KITTI
    assert np.all(remission_of(np.full(100, 0.05), np.full(100, 0.02), np.full(100, 70.0), rng) == 0)


def test_road_remission_falls_with_range(full_scan):
    """Rays reach the road at ever more grazing angles farther out: darker returns."""
    road = full_scan.points[full_scan.labels == ROAD].double()
    distance = road[:, :3].norm(dim=1)
    near, far = road[(distance > 5) & (distance < 10), 3], road[(distance > 25) & (distance < 50), 3]
    assert float(far.mean()) < 0.8 * float(near.mean())


@pytest.mark.parametrize("facing, bright", [(math.pi, True), (0.0, False)])
def test_sign_face_is_retroreflective_its_back_is_not(facing, bright):
    """A sign 10 m ahead facing the sensor shows its retro-reflective face; turned away, its dull back.
    The ray passes 0.2 m beside the pole, through the plate."""
    shapes = objects.pole(np.random.default_rng(0), 10.0, 0.0, -1.73, facing, sign=True)
    plate = shapes[1].center
    steps = 314  # the second ray turns 0.02 rad to the left: 0.2 m at 10 m
    image = RangeImage(np.array([math.atan2(plate[2], 10.0)]), steps, max_range=50.0)
    for shape in shapes:
        image.cast(shape, None)
    assert image.label[0, 1] == TRAFFIC_SIGN
    low, high = objects.ALBEDO["retroreflector"] if bright else objects.ALBEDO["metal"]
    assert low <= image.remission[0, 1] <= high


# --- ray casting ---------------------------------------------------------------------------------


def test_ray_hits_by_hand():
    image = RangeImage(np.array([0.0]), 4, max_range=50.0)  # four horizontal rays: +x, +y, -x, -y
    image.cast(Box((10.0, 0.0, 0.0), (1.0, 1.0, 1.0), 0.0, label=1, remission=0.5), None)
    image.cast(Ellipsoid((0.0, 10.0, 0.0), (2.0, 3.0, 2.0), label=2, remission=0.5), None)
    image.cast(Cylinder(-5.0, 0.0, 1.0, -1.0, 1.0, label=3, remission=0.5), None)
    image.cast(Box((0.0, -6.0, 0.0), (1.0, 1.0, 1.0), math.pi / 4, label=4, remission=0.5), None)
    assert image.depth[0].tolist() == pytest.approx([9.0, 7.0, 4.0, 6.0 - math.sqrt(2)])
    assert image.label[0].tolist() == [1, 2, 3, 4]
    assert image.cos[0].tolist() == pytest.approx([1.0, 1.0, 1.0, math.sqrt(0.5)])


@pytest.mark.parametrize("roll, pitch", [(0.0, 0.0), (0.03, -0.04)])
def test_angular_window_misses_no_hit(roll, pitch):
    """Casting through each shape's window equals testing every ray against every shape, level or tilted."""
    rng = np.random.default_rng(0)
    rotation = Pose(1.73, roll, pitch).rotation()
    windowed = RangeImage(hdl64_elevations(24), 256, max_range=60.0, rotation=rotation)
    every = RangeImage(hdl64_elevations(24), 256, max_range=60.0, rotation=rotation)
    rays = np.ix_(np.arange(24), np.arange(256))
    for i in range(60):
        centre = tuple(rng.uniform(-20, 20, 2)) + (rng.uniform(-2, 4),)
        size = tuple(rng.uniform(0.1, 4.0, 3))
        shape = [Box(centre, size, rng.uniform(0, 6), label=i, remission=0.3),
                 Ellipsoid(centre, size, label=i, remission=0.3),
                 Cylinder(centre[0], centre[1], size[0], centre[2] - size[2], centre[2] + size[2], label=i,
                          remission=0.3)][i % 3]
        windowed.cast(shape, None)
        every.update(rays, *shape.intersect(every.dirs), shape.label, shape.remission)
    assert np.array_equal(windowed.depth, every.depth) and np.array_equal(windowed.label, every.label)
    assert (windowed.label >= 0).mean() > 0.2  # the shapes do cover much of the view


# --- the street layout ---------------------------------------------------------------------------


def straight(origin=(0.0, 0.0), heading=0.0, curvature=0.0, start=-130.0, end=130.0, kerb=0.15) -> Arm:
    """A carriageway 3 m either side of its centreline, no parking, 2 m sidewalks, no verge."""
    return Arm(origin, heading, curvature, start, end, 3.0, (0.0, 0.0), (2.0, 2.0), (0.0, 0.0), kerb, 0.0,
               (0.3, 0.4, 0.5, 0.6, 0.6))


def test_arc_frame_by_hand():
    arm = straight(origin=(0.0, 0.0), curvature=1 / 50)  # turning left around (0, 50)
    angle = 0.4
    x, y = 50 * math.sin(angle), 50 - 50 * math.cos(angle)
    along, lateral = arm.frame(np.array([x, 0.9 * x]), np.array([y, 50 - 0.9 * 50 * math.cos(angle)]))
    assert along.tolist() == pytest.approx([50 * angle, 50 * angle]) and lateral.tolist() == pytest.approx([0.0, 5.0])
    px, py, heading = arm.place(50 * angle, 5.0)
    assert (px, py, heading) == pytest.approx((45 * math.sin(angle), 50 - 45 * math.cos(angle), angle))


def test_crossing_road_cuts_the_sidewalk():
    main = straight(origin=(0.0, 0.0))
    side = straight(origin=(20.0, 0.0), heading=math.pi / 2, start=0.0)  # a T-junction to the left at x = 20
    layout = Layout((main, side))
    rank, owner, _ = layout.zone(np.array([20.0, 10.0, 20.0, 20.0, 30.0]), np.array([4.0, 4.0, -4.0, 10.0, 10.0]))
    # the mouth of the side road, the main sidewalk beside it, the far sidewalk (no road beyond it), the
    # side road itself, and the land beside it
    assert rank.tolist() == [CARRIAGEWAY, FOOTWAY, FOOTWAY, CARRIAGEWAY, LAND]
    assert owner.tolist()[3] == 1


@pytest.mark.parametrize(
    "elevation, depth, label",
    [
        (-70.0, 1.73 / math.sin(math.radians(70)), ROAD),  # lands on the road short of the kerb at 1 m
        (-55.0, 1.58 / math.sin(math.radians(55)), SIDEWALK),  # reaches sidewalk height past the kerb
        (-58.0, 1 / math.cos(math.radians(58)), SIDEWALK),  # between the two: ends on the kerb face
    ],
)
def test_ground_kerb_by_hand(elevation, depth, label):
    """A ray to the right (-y) over a road whose kerb is 1 m to the sensor's right, 0.15 m high,
    with the sensor 1.73 m above the road."""
    layout = Layout((straight(origin=(0.0, 2.0)),))
    image = RangeImage(np.radians([elevation]), 4, max_range=50.0)
    layout.cast_ground(image, 1.73, halvings=30)
    assert image.depth[0, 3] == pytest.approx(depth, abs=1e-6) and image.label[0, 3] == label


# --- on disk -------------------------------------------------------------------------------------


def test_synthetic_dataset_on_disk_reads_back(tmp_path):
    """write_synthetic_dataset: the SemanticKITTI layout, read back by the SemanticKITTI reader as the
    generated scans (points bitwise, training ids through the raw ids and back); seeded per frame."""
    options = dict(beams=16, azimuth_steps=256)
    root = write_synthetic_dataset(tmp_path / "synth", {"00": 2, "08": 1}, seed=3, **options)
    names = sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())
    assert names == [
        "sequences/00/labels/000000.label", "sequences/00/labels/000001.label", "sequences/00/velodyne/000000.bin",
        "sequences/00/velodyne/000001.bin", "sequences/08/labels/000000.label", "sequences/08/velodyne/000000.bin",
    ]
    data = SemanticKITTI(root, sequences=("00", "08"))
    seeds = [frame_seed(3, "00", 0), frame_seed(3, "00", 1), frame_seed(3, "08", 0)]
    assert len(set(seeds)) == 3
    for index, seed in enumerate(seeds):
        expected = generate_scan(seed=seed, **options)
        assert torch.equal(data[index].points, expected.points) and torch.equal(data[index].labels, expected.labels)
    with pytest.raises(ValueError, match="sequences maps digit names to frame counts >= 1"):
        write_synthetic_dataset(tmp_path / "bad", {"train": 2})
