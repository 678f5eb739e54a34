"""Ray casting for the synthetic lidar: rays from the sensor origin against boxes, ellipsoids and
vertical cylinders, kept in a range image that holds the nearest hit of every ray (a z-buffer).

Each shape only tests the rays of its angular window, the beams and azimuth columns that can see
its bounding box, so a scene of a few hundred shapes costs little more than its visible area.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True, kw_only=True)
class Surface:
    """What a shape returns: its label, its remission at normal incidence, and for foliage or wire
    fences the fraction of rays that pass through and the mean depth of returns behind its skin."""

    label: int
    remission: float
    porosity: float = 0.0
    scatter: float = 0.0


@dataclass(frozen=True)
class Box(Surface):
    """A box of half sizes `half` around `center`, turned by `yaw` (radians) about the z axis."""

    center: tuple[float, float, float]
    half: tuple[float, float, float]
    yaw: float

    def bounds(self) -> tuple[np.ndarray, np.ndarray]:
        c, s = abs(math.cos(self.yaw)), abs(math.sin(self.yaw))
        hx, hy, hz = self.half
        extent = np.array([c * hx + s * hy, s * hx + c * hy, hz])
        return np.array(self.center) - extent, np.array(self.center) + extent

    def intersect(self, dirs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        c, s = math.cos(self.yaw), math.sin(self.yaw)
        rotate = np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])  # world -> box frame: v @ R
        local = dirs @ rotate
        origin = -np.array(self.center) @ rotate
        half = np.array(self.half)
        with np.errstate(divide="ignore", invalid="ignore"):
            inv = 1.0 / local
            t1, t2 = (-half - origin) * inv, (half - origin) * inv
        near_per_axis = np.minimum(t1, t2)
        near, far = near_per_axis.max(-1), np.maximum(t1, t2).min(-1)
        hit = (near <= far) & (near > 0)
        # The face normal is the axis of the slab entered last; |n . d| is that axis' direction component.
        axis = near_per_axis.argmax(-1)[..., None]
        return np.where(hit, near, np.inf), np.abs(np.take_along_axis(local, axis, -1)[..., 0])


@dataclass(frozen=True)
class Ellipsoid(Surface):
    center: tuple[float, float, float]
    radii: tuple[float, float, float]

    def bounds(self) -> tuple[np.ndarray, np.ndarray]:
        return np.array(self.center) - self.radii, np.array(self.center) + self.radii

    def intersect(self, dirs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        radii = np.array(self.radii)
        origin = -np.array(self.center) / radii  # in the frame where the ellipsoid is the unit sphere
        scaled = dirs / radii
        a = (scaled * scaled).sum(-1)
        b = scaled @ origin
        disc = b * b - a * (origin @ origin - 1.0)
        t = (-b - np.sqrt(np.maximum(disc, 0.0))) / a
        hit = (disc >= 0) & (t > 0)
        normal = (t[..., None] * dirs - self.center) / radii**2
        cos = np.abs((normal * dirs).sum(-1)) / np.maximum(np.linalg.norm(normal, axis=-1), 1e-12)
        return np.where(hit, t, np.inf), cos


@dataclass(frozen=True)
class Cylinder(Surface):
    """A vertical cylinder (no caps): axis through (x, y), from z_low to z_high."""

    x: float
    y: float
    radius: float
    z_low: float
    z_high: float

    def bounds(self) -> tuple[np.ndarray, np.ndarray]:
        r = self.radius
        return np.array([self.x - r, self.y - r, self.z_low]), np.array([self.x + r, self.y + r, self.z_high])

    def intersect(self, dirs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        dx, dy = dirs[..., 0], dirs[..., 1]
        a = dx * dx + dy * dy
        b = -(self.x * dx + self.y * dy)
        disc = b * b - a * (self.x**2 + self.y**2 - self.radius**2)
        with np.errstate(divide="ignore", invalid="ignore"):
            t = (-b - np.sqrt(np.maximum(disc, 0.0))) / a
        z = t * dirs[..., 2]
        hit = (disc >= 0) & (t > 0) & (z >= self.z_low) & (z <= self.z_high)
        nx, ny = (t * dx - self.x) / self.radius, (t * dy - self.y) / self.radius
        return np.where(hit, t, np.inf), np.abs(nx * dx + ny * dy)


Shape = Box | Ellipsoid | Cylinder


class RangeImage:
    """The nearest hit of every ray of a spinning lidar: rows are beams (elevations, descending),
    columns azimuth steps (counter-clockwise from +x). Hits beyond `max_range` are never kept.

    `rotation` (3 x 3, sensor frame -> world frame) tilts the sensor: `sensor_dirs` are the rays as
    the sensor reports them, `dirs` the same rays in the world the shapes stand in."""

    def __init__(self, elevations: np.ndarray, azimuth_steps: int, max_range: float, rotation: np.ndarray | None = None):
        self.elevations = np.asarray(elevations, dtype=np.float64)
        self.azimuths = np.arange(azimuth_steps) * (2 * math.pi / azimuth_steps)
        el, az = self.elevations[:, None], self.azimuths[None, :]
        self.sensor_dirs = np.stack(np.broadcast_arrays(np.cos(el) * np.cos(az), np.cos(el) * np.sin(az), np.sin(el)), -1)
        rotation = np.eye(3) if rotation is None else np.asarray(rotation, dtype=np.float64)
        self.dirs = self.sensor_dirs @ rotation.T
        # A rotation by angle a moves every ray by at most a: the angular windows widen by that much.
        self.tilt = math.acos(min(1.0, max(-1.0, (np.trace(rotation) - 1) / 2)))
        shape = self.dirs.shape[:2]
        self.depth = np.full(shape, float(max_range))
        self.cos = np.zeros(shape)
        self.label = np.full(shape, -1, dtype=np.int64)  # -1: no return
        self.remission = np.zeros(shape)

    def update(self, window, t: np.ndarray, cos: np.ndarray, label, remission) -> None:
        """Keep the hits `t` of the rays in `window` (np.ix_ indices) that are nearer than the current ones."""
        nearer = t < self.depth[window]
        for image, value in ((self.depth, t), (self.cos, cos), (self.label, label), (self.remission, remission)):
            image[window] = np.where(nearer, value, image[window])

    def cast(self, shape: Shape, rng: np.random.Generator | None) -> None:
        """Keep the nearer hits of `shape`; `rng` draws the rays a porous shape lets through."""
        window = self.window(*shape.bounds())
        if window is None:
            return
        t, cos = shape.intersect(self.dirs[window])
        if shape.porosity:
            through = rng.random(t.shape) < shape.porosity
            t = np.where(through, np.inf, t + rng.exponential(shape.scatter, t.shape))
        self.update(window, t, cos, shape.label, shape.remission)

    def window(self, lo: np.ndarray, hi: np.ndarray):
        """np.ix_ indices of the rays that can hit the axis-aligned box [lo, hi], or None."""
        # Horizontal distance from the sensor axis to the box footprint: nearest and farthest.
        near = math.hypot(max(lo[0], -hi[0], 0.0), max(lo[1], -hi[1], 0.0))
        corners = np.array([[lo[0], lo[1]], [lo[0], hi[1]], [hi[0], lo[1]], [hi[0], hi[1]]])
        far = float(np.linalg.norm(corners, axis=1).max())
        # The steepest ray up ends at the top seen from the nearest point, the lowest at the bottom.
        top = math.atan2(hi[2], near if hi[2] > 0 else far)
        bottom = math.atan2(lo[2], near if lo[2] < 0 else far)
        rows = np.nonzero((self.elevations >= bottom - self.tilt) & (self.elevations <= top + self.tilt))[0]
        if rows.size == 0:
            return None
        steps = self.azimuths.size
        if near == 0.0:  # the footprint surrounds the sensor: every azimuth
            return np.ix_(rows, np.arange(steps))
        centre = math.atan2((lo[1] + hi[1]) / 2, (lo[0] + hi[0]) / 2)
        spread = (np.arctan2(corners[:, 1], corners[:, 0]) - centre + math.pi) % (2 * math.pi) - math.pi
        step = 2 * math.pi / steps
        # A ray at elevation e moved by angle a turns by at most asin(sin a / cos e) in azimuth.
        steepest = float(np.abs(self.elevations[rows]).max()) + self.tilt
        if self.tilt and steepest >= math.pi / 2 - 0.01:
            return np.ix_(rows, np.arange(steps))
        margin = math.asin(min(1.0, math.sin(self.tilt) / math.cos(steepest))) if self.tilt else 0.0
        first = math.ceil((centre + spread.min() - margin) / step)
        last = math.floor((centre + spread.max() + margin) / step)
        if last < first:
            return None
        if last - first + 1 >= steps:
            return np.ix_(rows, np.arange(steps))
        return np.ix_(rows, np.arange(first, last + 1) % steps)
