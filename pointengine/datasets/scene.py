"""What stands along the arms of a street layout: parked cars in the parking lanes, traffic and
riders on the carriageway, poles, signs, people and bicycles on the sidewalks, trees and bushes on
the verges, fences and hedges at the edge of the land, and rows of buildings on it.

Every object is placed in a strip of its own arm, and kept only where the layout agrees (a parked
car does not stand in a crossing road, a building does not reach over a sidewalk).
"""

from __future__ import annotations

import math

import numpy as np

from . import objects
from .layout import CARRIAGEWAY, FOOTWAY, LAND, PARKING_LANE, VERGE, Arm, Layout
from .raycast import Shape

SEEN = 90.0  # m: objects farther from the sensor are not built


class Scene:
    """Builds the shapes of one street from one generator; `ground` is the road's z in the world frame.
    `rare` multiplies how often the rare classes come (riders, parked two-wheelers, people, trucks,
    other vehicles, fences); at 1 the street is the usual one, drawn with the same random numbers."""

    def __init__(self, layout: Layout, rng: np.random.Generator, ground: float, rare: float = 1.0):
        self.layout, self.rng, self.ground, self.rare = layout, rng, ground, rare

    def shapes(self) -> list[Shape]:
        out: list[Shape] = []
        for index, arm in enumerate(self.layout.arms):
            out += self._traffic(index, arm)
            for side in (0, 1):
                out += self._parked(index, arm, side) + self._sidewalk(index, arm, side)
                out += self._plants(index, arm, side) + self._land(index, arm, side)
        return out

    def _at(self, index: int, arm: Arm, along: float, lateral: float, ranks, reach: float = 0.0):
        """(x, y, heading, ground z) of a spot on `arm`, or None when it is out of sight or the layout
        puts another strip there (checked at the spot and `reach` m ahead and behind along the arm)."""
        x, y, heading = arm.place(along, lateral)
        if math.hypot(x, y) > SEEN:
            return None
        spots = [arm.place(along + a, lateral)[:2] for a in ((-reach, 0.0, reach) if reach else (0.0,))]
        xs, ys = np.array([p[0] for p in spots]), np.array([p[1] for p in spots])
        rank, owner, level = self.layout.zone(xs, ys)
        if not all(r in ranks and (o == index or r == LAND) for r, o in zip(rank.tolist(), owner.tolist())):
            return None
        return x, y, heading, self.ground + float(level[len(spots) // 2])

    def _walk(self, arm: Arm, spacing: tuple[float, float]):
        """Arc lengths along the arm, `spacing` m apart (drawn), from a random start."""
        along = arm.start + self.rng.uniform(0.0, spacing[1])
        while along < arm.end:
            yield along
            along += self.rng.uniform(*spacing)

    def _traffic(self, index: int, arm: Arm) -> list[Shape]:
        """Vehicles in both lanes, and riders (bicycles, some motorcycles) near the kerb, clear of the sensor's own car."""
        rng, out = self.rng, []
        others = min(0.16 * self.rare, 0.9)  # trucks and other vehicles, half each
        for _ in range(rng.poisson(1.5)):
            lane = rng.choice([-1.0, 1.0])
            spot = self._at(index, arm, rng.uniform(arm.start, arm.end), lane * arm.road / 2, (CARRIAGEWAY,), 3.0)
            if spot is None or math.hypot(spot[0], spot[1]) < 8.0:
                continue
            x, y, heading, ground = spot
            yaw = heading + (0.0 if lane < 0 else math.pi) + rng.normal(0.0, 0.03)
            kind = rng.random()
            if kind < 1.0 - others:
                out += objects.car(rng, x, y, yaw, ground)
            elif kind < 1.0 - others / 2:
                out += objects.truck(rng, x, y, yaw, ground)
            else:
                out += objects.other_vehicle(rng, x, y, yaw, ground)
        for _ in range(rng.poisson(1.0 * self.rare)):
            lane = rng.choice([-1.0, 1.0])
            spot = self._at(index, arm, rng.uniform(arm.start, arm.end), lane * (arm.road - 0.7), (CARRIAGEWAY,))
            if spot is not None and math.hypot(spot[0], spot[1]) > 4.0:
                x, y, heading, ground = spot
                yaw = heading + (0.0 if lane < 0 else math.pi)
                out += objects.two_wheeler(rng, x, y, yaw, ground, motor=rng.random() < 0.4, rider=True)
        return out

    def _parked(self, index: int, arm: Arm, side: int) -> list[Shape]:
        rng, out = self.rng, []
        if not arm.parking[side]:
            return out
        sign, occupied = 1.0 - 2.0 * side, rng.uniform(0.1, 0.6)
        lateral = sign * (arm.road + arm.parking[side] / 2 + rng.uniform(-0.15, 0.15))
        others = min(0.05 * self.rare, 0.9)  # other vehicles 2 parts in 5, trucks 3
        for along in self._walk(arm, (5.2, 8.0)):
            if rng.random() > occupied:
                continue
            spot = self._at(index, arm, along, lateral, (PARKING_LANE,), 2.2)
            if spot is None:
                continue
            x, y, heading, ground = spot
            yaw = heading + (math.pi if rng.random() < 0.5 else 0.0) + rng.normal(0.0, 0.04)
            kind = rng.random()
            if kind < 1.0 - others:
                build = objects.car
            else:
                build = objects.other_vehicle if kind < 1.0 - others * 0.6 else objects.truck
            out += build(rng, x, y, yaw, ground)
        return out

    def _sidewalk(self, index: int, arm: Arm, side: int) -> list[Shape]:
        """Poles (some with a sign facing the oncoming traffic of this side) at the kerb; people and
        parked bicycles or motorcycles on the pavement."""
        rng, out = self.rng, []
        sign = 1.0 - 2.0 * side
        kerb, width = arm.road + arm.parking[side], arm.sidewalk[side]
        for along in self._walk(arm, (8.0, 30.0)):
            spot = self._at(index, arm, along, sign * (kerb + 0.35), (FOOTWAY,))
            if spot is not None:
                x, y, heading, ground = spot
                facing = heading + (math.pi if side == 1 else 0.0)
                out += objects.pole(rng, x, y, ground, facing, sign=rng.random() < 0.35)
        for _ in range(rng.poisson(1.0 * self.rare)):
            spot = self._at(index, arm, rng.uniform(arm.start, arm.end), sign * (kerb + rng.uniform(0.4, width)), (FOOTWAY,))
            if spot is not None and math.hypot(spot[0], spot[1]) > 3.0:
                out += objects.person(rng, spot[0], spot[1], spot[2], spot[3])
        for _ in range(rng.poisson(0.4 * self.rare)):
            spot = self._at(index, arm, rng.uniform(arm.start, arm.end), sign * (kerb + width - 0.4), (FOOTWAY,))
            if spot is not None:
                x, y, heading, ground = spot
                out += objects.two_wheeler(rng, x, y, heading + math.pi / 2, ground, motor=rng.random() < 0.3,
                                           rider=False)
        return out

    def _plants(self, index: int, arm: Arm, side: int) -> list[Shape]:
        """Trees and bushes on the verge, or trees at the back of the sidewalk where there is no verge."""
        rng, out = self.rng, []
        sign = 1.0 - 2.0 * side
        edges = arm.edges(side)
        verge = arm.verge[side] > 0.8
        middle, strip = ((edges[2] + edges[3]) / 2, VERGE) if verge else (edges[2] - 0.6, FOOTWAY)
        trees = rng.uniform(0.3, 0.9) if verge else rng.uniform(0.0, 0.5)
        for along in self._walk(arm, (5.0, 14.0)):
            spot = self._at(index, arm, along, sign * middle, (strip,))
            if spot is None:
                continue
            x, y, heading, ground = spot
            if rng.random() < trees:
                out += objects.tree(rng, x, y, ground)
            elif verge:
                out.append(objects.bush(rng, x, y, ground, rng.uniform(0.8, 4.0), heading))
        return out

    def _land(self, index: int, arm: Arm, side: int) -> list[Shape]:
        """A fence or hedge at the front of each plot, buildings set back behind it, bushes and trees between."""
        rng, out = self.rng, []
        sign, edge = 1.0 - 2.0 * side, arm.edges(side)[3]
        setback = rng.uniform(0.5, 6.0)
        built = rng.random() < 0.85
        along = arm.start + rng.uniform(0.0, 10.0)
        fences = min(0.05 * self.rare, 0.5)  # of the plots' fronts; hedges take 0.55 more
        while along < arm.end:
            plot = rng.uniform(8.0, 30.0)
            front = self._at(index, arm, along + plot / 2, sign * (edge + 0.3), (LAND,))
            kind = rng.random()
            if front is not None and kind < fences:
                x, y, heading, ground = front
                out.append(objects.fence(rng, x, y, ground, plot, heading))
            elif front is not None and kind < fences + 0.55:
                x, y, heading, ground = front
                out.append(objects.bush(rng, x, y, ground, plot, heading))
            depth = rng.uniform(8.0, 16.0)
            lateral = sign * (edge + setback)
            corners = [self._at(index, arm, along + a, lateral + sign * b, (LAND,))
                       for a in (0.0, plot / 2, plot) for b in (0.0, depth)]
            house = built and all(corner is not None for corner in corners)
            if house:
                x, y, heading, ground = corners[2]
                yaw = heading if side == 0 else heading + math.pi
                out += objects.building(rng, x, y, yaw, ground, plot, depth, setback)
            # a front garden, or a plot of trees and bushes where nothing is built
            for _ in range(rng.poisson(3.0 if house else 6.0)):
                across = rng.uniform(0.5, setback) if house else rng.uniform(0.5, setback + depth)
                spot = self._at(index, arm, along + rng.uniform(0, plot), sign * (edge + across), (LAND,))
                if spot is not None:
                    out += objects.tree(rng, spot[0], spot[1], spot[3]) if rng.random() < 0.4 else [
                        objects.bush(rng, spot[0], spot[1], spot[3], rng.uniform(1.0, 3.0), spot[2])]
            along += plot + (rng.uniform(1.0, 10.0) if rng.random() < 0.4 else 0.0)
        return out
