"""A seeded synthetic lidar scan: a 64-beam spinning lidar (laid out like a Velodyne HDL-64E on a car
roof) ray-cast over a procedural street, labelled with the SemanticKITTI training ids.

The street runs along x. Across it (y) lie the road with lane markings, a parking lane on some sides,
raised sidewalks, a strip of terrain, and building facades with gaps; cars stand in the parking lanes
and on the road, poles (some carrying a traffic sign) at the kerb, trees and hedges on the terrain,
fences or hedges in some gaps between buildings. Coordinates are in the sensor frame, as in KITTI: x forward, y left, z up.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from .raycast import Box, Cylinder, Ellipsoid, RangeImage, Shape
from .scan import LidarScan

# SemanticKITTI training ids (datasets/semantickitti.yaml).
CAR, ROAD, PARKING, SIDEWALK, BUILDING, FENCE, VEGETATION, TRUNK, TERRAIN, POLE, TRAFFIC_SIGN = (
    1, 9, 10, 11, 13, 14, 15, 16, 17, 18, 19,
)
SENSOR_HEIGHT = 1.73  # m above the road, as on the KITTI car
STREET_HALF_LENGTH = 130.0  # m, beyond the longest range


def hdl64_elevations(beams: int = 64) -> np.ndarray:
    """Beam elevations in radians, descending. The HDL-64E has an upper block of 32 beams from +2 deg
    to -8.33 deg (1/3 deg apart) and a lower block of 32 beams to -24.8 deg (about 1/2 deg apart);
    other beam counts sample the same profile evenly."""
    profile = np.concatenate([np.linspace(2.0, -8.33, 32), np.linspace(-8.87, -24.8, 32)])
    return np.radians(np.interp(np.linspace(0, 63, beams), np.arange(64), profile))


def generate_scan(
    seed: int = 0,
    beams: int = 64,
    azimuth_steps: int = 2048,
    max_range: float = 100.0,
    min_range: float = 2.5,
    range_noise: float = 0.02,
    dropout: float = 0.03,
) -> LidarScan:
    """One scan: points float32 [N, 4] (x, y, z, remission in [0, 1)), labels int64 [N].

    The same seed gives the same scan, bit for bit. `range_noise` is the standard deviation of the
    range error (m); `dropout` the fraction of returns lost (dark or specular surfaces); returns
    nearer than `min_range` fall on the car carrying the sensor and are dropped.
    """
    if beams < 1 or azimuth_steps < 1:
        raise ValueError(f"beams and azimuth_steps must be >= 1, got {beams} and {azimuth_steps}")
    if not 0 < min_range < max_range:
        raise ValueError(f"need 0 < min_range < max_range, got min_range={min_range}, max_range={max_range}")
    rng = np.random.default_rng(seed)
    image = RangeImage(hdl64_elevations(beams), azimuth_steps, max_range)
    street = _Street(rng)
    street.cast_ground(image)
    for shape in street.shapes():
        image.cast(shape, rng)
    return _returns(image, rng, min_range, range_noise, dropout)


@dataclass(frozen=True)
class _Side:
    """One side of the street: +1 left of the road's centre line, -1 right; strip edges measured from it."""

    sign: float
    parking: float  # outer edge of the parking lane (= the road's edge where there is none)
    sidewalk: float  # outer edge of the sidewalk


class _Street:
    """The strips across the street and the shapes standing on them, drawn from one generator."""

    def __init__(self, rng: np.random.Generator):
        self.rng = rng
        self.ground = -SENSOR_HEIGHT
        self.road = rng.uniform(3.2, 4.5)  # half width of the carriageway
        self.centre = self.road / 2 + rng.uniform(-0.3, 0.3)  # the sensor drives in the right lane
        self.kerb = 0.15
        self.sides = []
        for sign in (1.0, -1.0):
            parking = self.road + (rng.uniform(2.0, 2.5) if rng.random() < 0.5 else 0.0)
            self.sides.append(_Side(sign, parking, parking + rng.uniform(3.0, 5.0)))

    def cast_ground(self, image: RangeImage) -> None:
        """The road plane, labelled by strip: road (with brighter lane markings), parking, terrain.
        The sidewalks are raised boxes above it."""
        dirs = image.dirs
        down = dirs[..., 2] < 0
        t = np.where(down, self.ground / np.where(down, dirs[..., 2], -1.0), np.inf)
        reach = np.minimum(t, 1e6)  # where the rays that miss the ground would be, finite for the labels
        x, y = reach * dirs[..., 0], reach * dirs[..., 1] - self.centre
        left, right = self.sides
        parking = np.where(y >= 0, left.parking, right.parking)
        across = np.abs(y)
        label = np.select([across < self.road, across < parking], [ROAD, PARKING], TERRAIN)
        remission = np.select([across < self.road, across < parking], [0.2, 0.28], 0.3)
        dashes = (across < 0.08) & (np.mod(x, 9.0) < 3.0)  # the dashed centre line
        edges = np.abs(across - self.road + 0.2) < 0.08  # the solid edge lines
        remission = np.where(dashes | edges, 0.65, remission)
        every = np.ix_(np.arange(dirs.shape[0]), np.arange(dirs.shape[1]))
        image.update(every, t, np.abs(dirs[..., 2]), label, remission)

    def shapes(self) -> list[Shape]:
        out: list[Shape] = []
        for side in self.sides:
            out += self._sidewalk(side) + self._parked_cars(side) + self._poles(side) + self._plants(side)
            out += self._facades(side)
        return out + self._traffic()

    def _y(self, side: _Side, offset: float) -> float:
        return self.centre + side.sign * offset

    def _sidewalk(self, side: _Side) -> list[Shape]:
        width = side.sidewalk - side.parking
        centre = (0.0, self._y(side, side.parking + width / 2), self.ground + self.kerb / 2)
        return [Box(centre, (STREET_HALF_LENGTH, width / 2, self.kerb / 2), 0.0, label=SIDEWALK, remission=0.3)]

    def _car(self, x: float, y: float, yaw: float) -> list[Shape]:
        """A body and a cabin set back towards the rear, 0.2 m above the road on its wheels."""
        rng = self.rng
        length, width = rng.uniform(3.8, 4.9), rng.uniform(1.65, 1.9)
        body, cabin = rng.uniform(0.75, 0.95), rng.uniform(0.45, 0.6)
        paint = rng.uniform(0.05, 0.5)
        low = self.ground + 0.2
        back = 0.1 * length
        return [
            Box((x, y, low + body / 2), (length / 2, width / 2, body / 2), yaw, label=CAR, remission=paint),
            Box((x - back * math.cos(yaw), y - back * math.sin(yaw), low + body + cabin / 2),
                (0.27 * length, 0.44 * width, cabin / 2), yaw, label=CAR, remission=0.5 * paint),
        ]

    def _parked_cars(self, side: _Side) -> list[Shape]:
        rng, out = self.rng, []
        if side.parking == self.road:
            return out
        x = -STREET_HALF_LENGTH + rng.uniform(0, 10)
        while x < STREET_HALF_LENGTH:
            if rng.random() < 0.4:
                y = self._y(side, (self.road + side.parking) / 2 + rng.uniform(-0.2, 0.2))
                out += self._car(x, y, rng.normal(0, 0.05))
            x += rng.uniform(5.5, 9.0)
        return out

    def _traffic(self) -> list[Shape]:
        """A few cars on the road, kept clear of the sensor's own car."""
        rng, out = self.rng, []
        for _ in range(rng.integers(0, 3)):
            x = rng.uniform(12.0, 60.0) * rng.choice([-1.0, 1.0])
            lane = rng.choice([-1.0, 1.0]) * self.road / 2
            out += self._car(x, self.centre + lane, rng.normal(0, 0.03))
        return out

    def _poles(self, side: _Side) -> list[Shape]:
        """Poles at the kerb, some carrying a sign plate that faces the traffic."""
        rng, out = self.rng, []
        base = self.ground + self.kerb
        x = -STREET_HALF_LENGTH + rng.uniform(0, 20)
        while x < STREET_HALF_LENGTH:
            y = self._y(side, side.parking + 0.4)
            height = rng.uniform(3.5, 8.0)
            out.append(Cylinder(x, y, rng.uniform(0.06, 0.12), base, base + height, label=POLE,
                                remission=rng.uniform(0.1, 0.35)))
            if rng.random() < 0.4:
                plate = rng.uniform(0.3, 0.45)
                centre = (x - 0.08, y, base + rng.uniform(2.0, min(height, 3.2)))
                out.append(Box(centre, (0.03, plate, plate), 0.0, label=TRAFFIC_SIGN, remission=rng.uniform(0.5, 0.9)))
            x += rng.uniform(12.0, 35.0)
        return out

    def _plants(self, side: _Side) -> list[Shape]:
        """Trees and hedges on the terrain strip behind the sidewalk."""
        rng, out = self.rng, []
        x = -STREET_HALF_LENGTH + rng.uniform(0, 10)
        while x < STREET_HALF_LENGTH:
            y = self._y(side, side.sidewalk + rng.uniform(0.8, 2.0))
            if rng.random() < 0.6:
                out += self._tree(x, y)
            else:  # a stretch of hedge
                radii = (rng.uniform(2.0, 6.0), rng.uniform(0.6, 1.2), rng.uniform(0.7, 1.4))
                out.append(self._foliage((x, y, self.ground + 0.6 * radii[2]), radii))
            x += rng.uniform(4.0, 10.0)
        return out

    def _foliage(self, centre, radii) -> Ellipsoid:
        # Leaves let some rays through and return the rest from a few centimetres inside the crown.
        return Ellipsoid(centre, radii, label=VEGETATION, remission=self.rng.uniform(0.25, 0.45), porosity=0.15,
                         scatter=0.05)

    def _tree(self, x: float, y: float) -> list[Shape]:
        rng = self.rng
        trunk = rng.uniform(1.8, 3.2)
        crown = (rng.uniform(1.5, 3.5), rng.uniform(1.5, 3.5), rng.uniform(1.8, 3.5))
        return [
            Cylinder(x, y, rng.uniform(0.12, 0.3), self.ground, self.ground + trunk + 0.5, label=TRUNK,
                     remission=rng.uniform(0.25, 0.4)),
            self._foliage((x, y, self.ground + trunk + 0.7 * crown[2]), crown),
        ]

    def _facades(self, side: _Side) -> list[Shape]:
        """Buildings in a row along the street; gaps are closed by a fence, a hedge, or left open."""
        rng, out = self.rng, []
        x = -STREET_HALF_LENGTH
        while x < STREET_HALF_LENGTH:
            width, depth = rng.uniform(8.0, 30.0), rng.uniform(8.0, 15.0)
            front = side.sidewalk + rng.uniform(4.0, 10.0)
            height = rng.uniform(5.0, 20.0)
            centre = (x + width / 2, self._y(side, front + depth / 2), self.ground + height / 2)
            out.append(Box(centre, (width / 2, depth / 2, height / 2), 0.0, label=BUILDING,
                           remission=rng.uniform(0.3, 0.55)))
            x += width
            gap = rng.uniform(1.0, 12.0) if rng.random() < 0.5 else 0.0
            kind = rng.random()
            y = self._y(side, front - rng.uniform(0.0, 1.5))
            if gap and kind < 0.4:
                tall = rng.uniform(0.9, 1.8)
                out.append(Box((x + gap / 2, y, self.ground + tall / 2), (gap / 2, 0.04, tall / 2), 0.0, label=FENCE,
                               remission=rng.uniform(0.2, 0.4), porosity=0.5, scatter=0.01))
            elif gap and kind < 0.7:
                out.append(self._foliage((x + gap / 2, y, self.ground + 0.6), (gap / 2, 0.7, 1.2)))
            x += gap
        return out


def _returns(image: RangeImage, rng: np.random.Generator, min_range: float, noise: float, dropout: float) -> LidarScan:
    """Points of the rays that hit something, in beam-major order, with range noise, lost returns
    and a remission that falls off with the angle of incidence."""
    depth = image.depth + rng.normal(0.0, noise, image.depth.shape)
    keep = (image.label >= 0) & (depth >= min_range) & (rng.random(depth.shape) >= dropout)
    remission = image.remission * (0.35 + 0.65 * image.cos) + rng.normal(0.0, 0.03, depth.shape)
    xyz = depth[keep][:, None] * image.dirs[keep]
    points = np.concatenate([xyz, np.clip(remission[keep], 0.0, 0.99)[:, None]], axis=1)
    return LidarScan(torch.from_numpy(points.astype(np.float32)), torch.from_numpy(image.label[keep]))



def frame_seed(seed: int, sequence: str, frame: int) -> int:
    """The generate_scan seed of one frame of a synthetic dataset: every (seed, sequence, frame) its
    own street, the same on every machine."""
    return int(np.random.SeedSequence([seed, int(sequence), frame]).generate_state(1)[0])


def write_synthetic_dataset(root, sequences: dict[str, int], seed: int = 0, **scan_options) -> Path:
    """Writes generated scans in the SemanticKITTI layout under `root`: for each sequence name and
    frame count, `sequences/<seq>/velodyne/<frame>.bin` (float32 x, y, z, remission) and
    `sequences/<seq>/labels/<frame>.label` (uint32 raw SemanticKITTI ids, instance 0), frames
    numbered 000000 up. Seeded per frame (frame_seed); `scan_options` go to generate_scan. Returns root."""
    from ..outputs import write_labels
    from .config import load_dataset_config

    root = Path(root)
    config = load_dataset_config("semantickitti")
    for sequence, frames in sequences.items():
        if not (sequence.isdigit() and frames >= 1):
            raise ValueError(f"sequences maps digit names to frame counts >= 1, got {sequence!r}: {frames!r}")
        folder = root / "sequences" / sequence
        (folder / "velodyne").mkdir(parents=True, exist_ok=True)
        for frame in range(frames):
            scan = generate_scan(seed=frame_seed(seed, sequence, frame), **scan_options)
            scan.points.numpy().astype("<f4").tofile(folder / "velodyne" / f"{frame:06d}.bin")
            write_labels(folder / "labels" / f"{frame:06d}.label", config.raw_labels(scan.labels).numpy(), "label")
    return root
