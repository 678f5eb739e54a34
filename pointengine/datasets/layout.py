"""The ground of a synthetic street: roads (straight or curved arms, crossings, T-junctions) and the
strips along them, and the ray cast onto it.

Each arm is a centreline (a line or a circular arc) with strips on either side: the carriageway
(lane paint on it), a parking lane, the sidewalk behind a kerb, a grass verge a little higher, then
the land the buildings stand on. Where arms overlap the innermost strip wins, so crossing roads cut
through each other's sidewalks as at a real junction.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .kitti_ids import PARKING, ROAD, SIDEWALK, TERRAIN
from .raycast import RangeImage

REACH = 130.0  # m of every arm, beyond the longest range
# Strips by rank, inner to outer; LAND is where buildings stand.
CARRIAGEWAY, PARKING_LANE, FOOTWAY, VERGE, LAND = range(5)
GROUND_LABELS = np.array([ROAD, PARKING, SIDEWALK, TERRAIN, TERRAIN])
PAINT = 0.75  # albedo of lane markings


@dataclass(frozen=True)
class Arm:
    """A road centreline through `origin` with `heading` there (radians), straight or bending with
    `curvature` (1/m, positive to the left), from arc length `start` to `end`. Strip widths (m) are
    (left, right) pairs; `albedo` the ground materials by strip rank."""

    origin: tuple[float, float]
    heading: float
    curvature: float
    start: float
    end: float
    road: float  # half width of the carriageway
    parking: tuple[float, float]
    sidewalk: tuple[float, float]
    verge: tuple[float, float]
    kerb: float  # sidewalk height over the road
    rise: float  # verge and land height over the sidewalk
    albedo: tuple[float, float, float, float, float]

    def frame(self, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(arc length, lateral offset, positive to the left) of points."""
        dx, dy = x - self.origin[0], y - self.origin[1]
        c, s = math.cos(self.heading), math.sin(self.heading)
        if self.curvature == 0.0:
            return dx * c + dy * s, dy * c - dx * s
        k = self.curvature
        cx, cy = -s / k, c / k  # the centre of the arc, relative to the origin
        vx, vy = dx - cx, dy - cy
        angle = np.arctan2(cy * vx - cx * vy, -cx * vx - cy * vy)  # from the origin's radius, counter-clockwise
        return angle / k, np.sign(k) * (1.0 / abs(k) - np.hypot(vx, vy))

    def place(self, along: float, lateral: float) -> tuple[float, float, float]:
        """(x, y, heading) of the point at arc length `along`, `lateral` to the left of the centreline."""
        k, turn = self.curvature, self.heading + along * self.curvature
        if k == 0.0:
            x, y = self.origin[0] + along * math.cos(turn), self.origin[1] + along * math.sin(turn)
        else:  # the arc's end point: a chord from the origin
            x = self.origin[0] + (math.sin(turn) - math.sin(self.heading)) / k
            y = self.origin[1] - (math.cos(turn) - math.cos(self.heading)) / k
        return x - lateral * math.sin(turn), y + lateral * math.cos(turn), turn

    def edges(self, side: int) -> np.ndarray:
        """Outer edges of the carriageway, parking lane, sidewalk and verge on side 0 (left) or 1 (right)."""
        return np.cumsum([self.road, self.parking[side], self.sidewalk[side], self.verge[side]])

    def strips(self, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(rank, arc length, lateral offset) of points; rank LAND + 1 off the arm's ends."""
        along, lateral = self.frame(x, y)
        across, left = np.abs(lateral), lateral >= 0
        rank = np.zeros(across.shape, dtype=np.int64)
        for edge_left, edge_right in zip(self.edges(0), self.edges(1)):
            rank += across >= np.where(left, edge_left, edge_right)
        return np.where((along >= self.start) & (along <= self.end), rank, LAND + 1), along, lateral

    def levels(self) -> np.ndarray:
        """Ground height over the road by strip rank."""
        return np.array([0.0, 0.0, self.kerb, self.kerb + self.rise, self.kerb + self.rise])


@dataclass(frozen=True)
class Layout:
    arms: tuple[Arm, ...]

    def zone(self, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(rank, owning arm, ground height over the road) of points: the innermost strip of any arm."""
        ranks = np.stack([arm.strips(x, y)[0] for arm in self.arms])
        owner = ranks.argmin(0)
        rank = np.minimum(np.take_along_axis(ranks, owner[None], 0)[0], LAND)
        return rank, owner, np.stack([arm.levels() for arm in self.arms])[owner, rank]

    def albedo(self, x: np.ndarray, y: np.ndarray, rank: np.ndarray, owner: np.ndarray) -> np.ndarray:
        """Ground albedo of points in their strips, with the lane paint of the carriageway."""
        albedo = np.array([arm.albedo for arm in self.arms])[owner, rank]
        for i, arm in enumerate(self.arms):
            mine = (owner == i) & (rank == CARRIAGEWAY)
            along, lateral = arm.frame(x[mine], y[mine])
            paint = (np.abs(lateral) < 0.06) & (np.mod(along, 9.0) < 3.0)  # the dashed centre line
            paint |= np.abs(np.abs(lateral) - arm.road + 0.25) < 0.06  # the solid edge lines
            albedo[np.nonzero(mine)[0][paint]] = PAINT
        return albedo

    def cast_ground(self, image: RangeImage, height: float, halvings: int = 10) -> None:
        """The ground as a height field, `height` below the sensor, with steps at the kerbs. Each downward
        ray is tested where it crosses each ground level, highest first: the first crossing above ground
        of that level is its hit; one over higher ground means the ray ran into a kerb face before it,
        found by halving (the face is labelled with the strip above it)."""
        levels = np.unique(np.concatenate([arm.levels() for arm in self.arms]))[::-1]
        rows, cols = np.nonzero(image.dirs[..., 2] < -1e-6)
        d = image.dirs[rows, cols]
        reach = (levels[0] - height) / d[:, 2] < image.depth[rows, cols]
        rows, cols, d = rows[reach], cols[reach], d[reach]
        t = np.full(d.shape[0], np.inf)
        face = np.zeros(d.shape[0], dtype=bool)
        previous = (levels[0] - height) / d[:, 2]
        for level in levels:
            open_ = np.isinf(t)
            t_level = (level - height) / d[open_, 2]
            ground = self.zone(t_level * d[open_, 0], t_level * d[open_, 1])[2]
            index = np.nonzero(open_)[0]
            hit = ground >= level - 1e-9
            t[index[hit]] = t_level[hit]
            face[index[hit & (ground > level + 1e-9)]] = True
            previous[index[~hit]] = t_level[~hit]
        self._refine_faces(d, t, previous, face, height, halvings)
        rank, owner, level = self.zone(t * d[:, 0], t * d[:, 1])
        # A kerb face is vertical; which way it faces is not tracked, so take a typical 45 deg off the ray.
        cos = np.where(face, np.hypot(d[:, 0], d[:, 1]) * math.sqrt(0.5), -d[:, 2])
        albedo = self.albedo(t * d[:, 0], t * d[:, 1], rank, owner)
        window = (rows, cols)
        nearer = t < image.depth[window]
        for target, value in ((image.depth, t), (image.cos, cos), (image.label, GROUND_LABELS[rank]),
                              (image.remission, albedo)):
            target[window] = np.where(nearer, value, target[window])

    def _refine_faces(self, d, t, previous, face, height, halvings) -> None:
        """Moves the hits of rays that ran into a kerb face onto it: between the last crossing above open
        ground and the first one under higher ground."""
        index = np.nonzero(face)[0]
        lo, hi, d = previous[index], t[index], d[index]
        for _ in range(halvings):
            mid = (lo + hi) / 2
            under = mid * d[:, 2] <= self.zone(mid * d[:, 0], mid * d[:, 1])[2] - height
            lo, hi = np.where(under, lo, mid), np.where(under, mid, hi)
        t[index] = hi


def draw_layout(rng: np.random.Generator) -> Layout:
    """A street around the sensor, which drives in the right lane of the first arm: straight, curved,
    a crossing or a T-junction, strips drawn per arm and side."""
    kind = rng.choice(["straight", "curved", "crossing", "t-junction"], p=[0.3, 0.2, 0.25, 0.25])
    road = rng.uniform(2.8, 5.0)
    curvature = rng.choice([-1.0, 1.0]) / rng.uniform(40.0, 150.0) if kind == "curved" else 0.0
    heading = rng.normal(0.0, 0.1)
    # The centreline lies half a lane to the sensor's left.
    lane = road / 2 + rng.uniform(-0.4, 0.4)
    origin = (-lane * math.sin(heading), lane * math.cos(heading))
    reach = min(REACH, 0.9 * math.pi / abs(curvature)) if curvature else REACH
    arms = [_arm(rng, origin, heading, curvature, -reach, reach, road)]
    if kind in ("crossing", "t-junction"):
        x, y, along = arms[0].place(rng.choice([-1.0, 1.0]) * rng.uniform(8.0, 35.0), 0.0)
        turn = along + rng.choice([-1.0, 1.0]) * (math.pi / 2 + rng.normal(0.0, 0.15))
        arms.append(_arm(rng, (x, y), turn, 0.0, -REACH if kind == "crossing" else 0.0, REACH, rng.uniform(2.8, 5.0)))
    return Layout(tuple(arms))


def _arm(rng, origin, heading, curvature, start, end, road) -> Arm:
    def pair(draw):
        return (draw(), draw())

    parking = pair(lambda: rng.uniform(2.0, 2.6) if rng.random() < 0.5 else 0.0)
    sidewalk = pair(lambda: rng.uniform(2.0, 5.0))
    verge = pair(lambda: rng.uniform(0.5, 3.0) if rng.random() < 0.3 else 0.0)
    # Near-infrared albedo: asphalt dark, paving and concrete brighter, grass bright.
    albedo = (rng.uniform(0.28, 0.45), rng.uniform(0.35, 0.55), rng.uniform(0.4, 0.6), rng.uniform(0.45, 0.7),
              rng.uniform(0.45, 0.7))
    return Arm(origin, heading, curvature, start, end, road, parking, sidewalk, verge, rng.uniform(0.08, 0.16),
               rng.uniform(0.0, 0.25), albedo)
