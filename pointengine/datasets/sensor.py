"""The synthetic lidar's sensor: a Velodyne HDL-64E on a car roof, as in KITTI. Its beam pattern
with per-beam calibration offsets and weak beams, its pose (height, roll, pitch), the car under it
that hides the nearest ground, and how a hit becomes a return: range noise, lost returns and a
remission that depends on the material, the angle of incidence and the range."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from .raycast import Box, RangeImage
from .scan import LidarScan

KITTI_HEIGHT = 1.73  # m above the road, as on the KITTI car


def _unit_calibration() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One sensor unit, the same in every scan: each beam's elevation error (radians), the extra
    fraction of returns its six weak beams lose, and its range error in units of its standard
    deviation (`returns` scales it)."""
    rng = np.random.default_rng(64)
    offsets = np.radians(rng.normal(0.0, 0.04, 64))
    loss = np.zeros(64)
    loss[rng.choice(64, 6, replace=False)] = rng.uniform(0.1, 0.4, 6)
    return offsets, loss, rng.normal(0.0, 1.0, 64)


BEAM_OFFSETS, BEAM_LOSS, BEAM_RANGE_BIAS = _unit_calibration()
EGO = -2  # label of rays that end on the sensor's own car: never returned


def hdl64_elevations(beams: int = 64, calibrated: bool = False) -> np.ndarray:
    """Beam elevations in radians, descending. The HDL-64E has an upper block of 32 beams from +2 deg
    to -8.33 deg (1/3 deg apart) and a lower block of 32 beams from -8.87 deg to -24.8 deg (about 1/2
    deg apart); other beam counts sample the same profile evenly.

    `calibrated`: the elevations as the returns appear from the sensor origin, which the points are
    given in. The lasers sit off the rotation axis, so on a roof-mounted unit the upper block appears
    from +2.5 to -7.8 deg and the lower block from -8.4 to -23.7 deg (the ring medians of a KITTI
    scan), each beam a few hundredths of a degree off its even spacing (BEAM_OFFSETS)."""
    nominal = np.concatenate([np.linspace(2.0, -8.33, 32), np.linspace(-8.87, -24.8, 32)])
    apparent = np.concatenate([np.linspace(2.5, -7.8, 32), np.linspace(-8.4, -23.7, 32)])
    profile = np.radians(apparent) + BEAM_OFFSETS if calibrated else np.radians(nominal)
    return np.interp(np.linspace(0, 63, beams), np.arange(64), profile)


@dataclass(frozen=True)
class Pose:
    """Sensor height above the road (m) and tilt (radians): roll about x (positive: left side up),
    then pitch about y (positive: nose down)."""

    height: float = KITTI_HEIGHT
    roll: float = 0.0
    pitch: float = 0.0

    @staticmethod
    def draw(rng: np.random.Generator) -> Pose:
        """A loaded car on a cambered, sloping street: +-0.1 m, about 1 deg of tilt."""
        roll, pitch = np.clip(rng.normal(0.0, math.radians(0.8), 2), -math.radians(2.5), math.radians(2.5))
        return Pose(KITTI_HEIGHT + rng.uniform(-0.1, 0.1), float(roll), float(pitch))

    def rotation(self) -> np.ndarray:
        """Sensor frame -> level world frame."""
        cr, sr, cp, sp = math.cos(self.roll), math.sin(self.roll), math.cos(self.pitch), math.sin(self.pitch)
        roll = np.array([[1.0, 0.0, 0.0], [0.0, cr, -sr], [0.0, sr, cr]])
        pitch = np.array([[cp, 0.0, sp], [0.0, 1.0, 0.0], [-sp, 0.0, cp]])
        return pitch @ roll


# The car carrying the sensor, in the sensor frame (x forward): roof rack and cabin, then bonnet and boot.
EGO_CAR = (
    Box((-0.25, 0.0, -0.8), (0.75, 0.72, 0.35), 0.0, label=EGO, remission=0.0),
    Box((-0.3, 0.0, -1.2), (2.3, 0.9, 0.4), 0.0, label=EGO, remission=0.0),
)


def block_ego_car(image: RangeImage) -> None:
    """Rays that end on the sensor's own car: it tilts with the sensor, so it is cast in the sensor frame."""
    rows = np.nonzero(image.elevations < -0.1)[0]  # the car is below every ray steeper than 6 deg down
    window = np.ix_(rows, np.arange(image.azimuths.size))
    for box in EGO_CAR:
        t, cos = box.intersect(image.sensor_dirs[window])
        image.update(window, t, cos, EGO, 0.0)


def remission_of(albedo: np.ndarray, cos: np.ndarray, distance: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """The reported remission of hits: the material's albedo, dimmer at grazing incidence and far away,
    with a per-point texture; weak echoes (dark, grazing or far) read 0, as in KITTI. In [0, 0.99],
    in steps of 0.01 like the KITTI files."""
    fade = 1.0 / (1.0 + (distance / 45.0) ** 3)
    value = albedo * (0.5 + 0.5 * cos) * fade * np.exp(rng.normal(0.0, 0.2, albedo.shape))
    value = value + rng.normal(0.0, 0.01, albedo.shape)
    value = np.where(echo(albedo, cos, distance) < 0.004, 0.0, value)
    return np.round(np.clip(value, 0.0, 0.99) * 100) / 100


def echo(albedo, cos, distance):
    """Relative strength of an echo: diffuse reflection, inverse square law (1 at 20 m, normal incidence)."""
    return albedo * cos * (20.0 / np.maximum(distance, 1.0)) ** 2


def returns(image: RangeImage, rng: np.random.Generator, min_range: float, noise: float, bias: float,
            dropout: float) -> LidarScan:
    """Points of the rays that hit something, in beam-major order, in the sensor frame. The range noise
    grows with range (`noise` m at the sensor, twice that at 40 m); each beam's range is off by its own
    error, `bias` m standard deviation over the beams (a flat wall comes back as slightly offset rings);
    a return is lost with probability `dropout` plus its beam's weakness, and always when its echo is
    too weak to detect."""
    distance = image.depth
    beam = np.linspace(0, 63, image.elevations.size)
    offset = bias * np.interp(beam, np.arange(64), BEAM_RANGE_BIAS)[:, None]
    depth = distance + offset + rng.normal(0.0, 1.0, distance.shape) * noise * (1.0 + distance / 40.0)
    rows = np.interp(beam, np.arange(64), BEAM_LOSS)[:, None]
    lost = rng.random(depth.shape) < dropout + rows
    keep = (image.label >= 0) & (depth >= min_range) & ~lost & (echo(image.remission, image.cos, distance) >= 5e-4)
    xyz = depth[keep][:, None] * image.sensor_dirs[keep]
    remission = remission_of(image.remission[keep], image.cos[keep], distance[keep], rng)
    points = np.concatenate([xyz, remission[:, None]], axis=1)
    return LidarScan(torch.from_numpy(points.astype(np.float32)), torch.from_numpy(image.label[keep]))
