"""The things on a synthetic street, as boxes, cylinders and ellipsoids on the ground at `ground` (z):
vehicles, people and riders, street furniture, plants and buildings. Each builder takes a position
and a heading and returns its shapes; sizes and materials are drawn from the generator.

Albedo (remission at normal incidence, near infrared) comes from the material's range in ALBEDO.
A rider and the bicycle or motorcycle under them share the rider's label (bicyclist,
motorcyclist), as in SemanticKITTI; bicycles and motorcycles without a rider keep their own.
"""

from __future__ import annotations

import math

import numpy as np

from .kitti_ids import (
    BICYCLE, BICYCLIST, BUILDING, CAR, FENCE, MOTORCYCLE, MOTORCYCLIST, OTHER_VEHICLE, PERSON, POLE,
    TRAFFIC_SIGN, TRUCK, TRUNK, VEGETATION,
)
from .raycast import Box, Cylinder, Ellipsoid, Shape

ALBEDO = {
    "paint": (0.05, 0.6),  # car paint, black to white
    "glass": (0.02, 0.08),
    "rubber": (0.03, 0.1),
    "cloth": (0.1, 0.6),
    "skin": (0.3, 0.5),
    "metal": (0.15, 0.35),  # poles, frames, the backs of signs
    "retroreflector": (0.7, 0.95),  # the faces of traffic signs
    "foliage": (0.35, 0.55),
    "bark": (0.3, 0.45),
    "wall": (0.35, 0.7),  # plaster, brick, concrete
    "fence": (0.25, 0.45),
}


def albedo(rng: np.random.Generator, material: str) -> float:
    return float(rng.uniform(*ALBEDO[material]))


def _ahead(x: float, y: float, yaw: float, forward: float, left: float = 0.0) -> tuple[float, float]:
    c, s = math.cos(yaw), math.sin(yaw)
    return x + forward * c - left * s, y + forward * s + left * c


def _wheels(rng, x, y, yaw, ground, label, base, track, radius) -> list[Shape]:
    """Four tyres, `base` apart along the vehicle and `track` across."""
    material = albedo(rng, "rubber")
    return [Box((*_ahead(x, y, yaw, a * base / 2, b * track / 2), ground + radius), (radius, 0.12, radius), yaw,
                label=label, remission=material) for a in (-1, 1) for b in (-1, 1)]


def car(rng, x, y, yaw, ground) -> list[Shape]:
    """A car or a van: a painted body on its wheels, a glass cabin set back towards the rear."""
    van = rng.random() < 0.15
    length, width = (rng.uniform(4.6, 5.4), rng.uniform(1.9, 2.05)) if van else (rng.uniform(3.7, 4.9), rng.uniform(1.65, 1.9))
    body = rng.uniform(1.2, 1.5) if van else rng.uniform(0.55, 0.8)
    cabin = rng.uniform(0.5, 0.7) if van else rng.uniform(0.4, 0.55)
    paint, low = albedo(rng, "paint"), ground + 0.3
    back = 0.0 if van else rng.uniform(0.05, 0.15) * length
    cabin_length = 0.4 * length if van else rng.uniform(0.25, 0.3) * length
    return [
        Box((x, y, low + body / 2), (length / 2, width / 2, body / 2), yaw, label=CAR, remission=paint),
        Box((*_ahead(x, y, yaw, -back), low + body + cabin / 2), (cabin_length, 0.45 * width, cabin / 2), yaw,
            label=CAR, remission=albedo(rng, "glass"), porosity=0.6),
    ] + _wheels(rng, x, y, yaw, ground, CAR, 0.6 * length, width - 0.25, 0.31)


def truck(rng, x, y, yaw, ground) -> list[Shape]:
    """A cab in front of a tall cargo box."""
    cargo, width, tall = rng.uniform(4.5, 8.5), rng.uniform(2.3, 2.55), rng.uniform(3.0, 3.8)
    cab = rng.uniform(1.8, 2.4)
    paint = albedo(rng, "paint")
    return [
        Box((*_ahead(x, y, yaw, cargo / 2 + cab / 2 + 0.1), ground + 0.5 + 1.2), (cab / 2, width / 2 - 0.05, 1.2), yaw,
            label=TRUCK, remission=paint),
        Box((x, y, ground + 1.0 + (tall - 1.0) / 2), (cargo / 2, width / 2, (tall - 1.0) / 2), yaw, label=TRUCK,
            remission=albedo(rng, "paint")),
    ] + _wheels(rng, x, y, yaw, ground, TRUCK, cargo, width - 0.3, 0.5)


def other_vehicle(rng, x, y, yaw, ground) -> list[Shape]:
    """A bus, or a caravan or trailer: one long box on wheels."""
    bus = rng.random() < 0.5
    length, tall = (rng.uniform(10.0, 12.5), rng.uniform(2.9, 3.3)) if bus else (rng.uniform(4.5, 7.0), rng.uniform(2.2, 2.7))
    width, low = rng.uniform(2.2, 2.55), ground + (0.35 if bus else 0.45)
    return [Box((x, y, low + tall / 2), (length / 2, width / 2, tall / 2), yaw, label=OTHER_VEHICLE,
                remission=albedo(rng, "paint"))] + _wheels(rng, x, y, yaw, ground, OTHER_VEHICLE, 0.6 * length,
                                                           width - 0.3, 0.45)


def _figure(rng, x, y, ground, label, seat: float | None) -> list[Shape]:
    """A person standing (seat None) or sitting astride at height `seat`: legs, torso, head."""
    tall = rng.uniform(1.55, 1.95)
    cloth, girth = albedo(rng, "cloth"), rng.uniform(0.15, 0.22)
    hip = seat if seat is not None else ground + 0.5 * tall
    shoulders = hip + 0.32 * tall
    legs = (Cylinder(x, y, 0.7 * girth, ground + 0.05, hip, label=label, remission=albedo(rng, "cloth")) if seat is None
            else Box((x, y, hip - 0.25), (0.15, 0.2, 0.25), 0.0, label=label, remission=albedo(rng, "cloth")))
    return [
        legs,
        Ellipsoid((x, y, (hip + shoulders) / 2), (girth, girth + 0.06, (shoulders - hip) / 2 + 0.05), label=label,
                  remission=cloth),
        Ellipsoid((x, y, shoulders + 0.13), (0.1, 0.09, 0.12), label=label, remission=albedo(rng, "skin")),
    ]


def person(rng, x, y, yaw, ground) -> list[Shape]:
    return _figure(rng, x, y, ground, PERSON, None)


def two_wheeler(rng, x, y, yaw, ground, motor: bool, rider: bool) -> list[Shape]:
    """A bicycle or a motorcycle: two wheels and a frame (a motorcycle's body is bulkier), with or without a rider."""
    label = (MOTORCYCLIST if motor else BICYCLIST) if rider else (MOTORCYCLE if motor else BICYCLE)
    radius, base = (0.32, 1.45) if motor else (0.34, 1.05)
    frame = albedo(rng, "paint" if motor else "metal")
    shapes = [Box((*_ahead(x, y, yaw, a * base / 2), ground + radius), (radius, 0.03 if not motor else 0.07, radius), yaw,
                  label=label, remission=albedo(rng, "rubber")) for a in (-1, 1)]
    if motor:
        shapes.append(Box((x, y, ground + 0.65), (0.6, 0.22, 0.3), yaw, label=label, remission=frame))
    else:
        shapes.append(Box((x, y, ground + 0.62), (0.42, 0.03, 0.14), yaw, label=label, remission=frame))
    if rider:
        shapes += _figure(rng, x, y, ground, label, ground + (0.8 if motor else 0.9))
    return shapes


def pole(rng, x, y, ground, facing: float, sign: bool) -> list[Shape]:
    """A metal pole; with `sign`, a plate facing the direction `facing`: a retro-reflective face in front of
    a dull metal back, so it shines only towards the traffic it is meant for."""
    height = rng.uniform(2.8, 8.0) if not sign else rng.uniform(2.6, 3.8)
    shapes: list[Shape] = [Cylinder(x, y, rng.uniform(0.05, 0.12), ground, ground + height, label=POLE,
                                    remission=albedo(rng, "metal"))]
    if sign:
        half = rng.uniform(0.3, 0.45)
        z = ground + height - half
        shapes += [
            Box((*_ahead(x, y, facing, 0.1), z), (0.01, half, half), facing, label=TRAFFIC_SIGN,
                remission=albedo(rng, "retroreflector")),
            Box((*_ahead(x, y, facing, 0.08), z), (0.01, half, half), facing, label=TRAFFIC_SIGN,
                remission=albedo(rng, "metal")),
        ]
    return shapes


def foliage(rng, centre, radii) -> Ellipsoid:
    # Leaves let some rays through and return the rest from a few centimetres inside the crown.
    return Ellipsoid(tuple(centre), tuple(radii), label=VEGETATION, remission=albedo(rng, "foliage"), porosity=0.15,
                     scatter=0.1)


def tree(rng, x, y, ground) -> list[Shape]:
    trunk = rng.uniform(1.5, 3.5)
    crown = (rng.uniform(1.5, 4.0), rng.uniform(1.5, 4.0), rng.uniform(1.5, 4.0))
    return [
        Cylinder(x, y, rng.uniform(0.1, 0.3), ground, ground + trunk + 0.5, label=TRUNK, remission=albedo(rng, "bark")),
        foliage(rng, (x, y, ground + trunk + 0.8 * crown[2]), crown),
    ]


def bush(rng, x, y, ground, length: float, yaw: float) -> Shape:
    """A bush, or a clipped hedge `length` m long along `yaw` when that is over 3 m."""
    across, tall = rng.uniform(0.4, 1.0), rng.uniform(0.6, 2.0)
    if length > 3.0:
        return Box((x, y, ground + tall / 2), (length / 2, across, tall / 2), yaw, label=VEGETATION,
                   remission=albedo(rng, "foliage"), porosity=0.1, scatter=0.08)
    return foliage(rng, (x, y, ground + 0.5 * tall), (length / 2, across, tall / 2 + 0.1))


def fence(rng, x, y, ground, length: float, yaw: float) -> Box:
    tall = rng.uniform(0.8, 1.6)
    return Box((x, y, ground + tall / 2), (length / 2, 0.03, tall / 2), yaw, label=FENCE,
               remission=albedo(rng, "fence"), porosity=rng.uniform(0.0, 0.6), scatter=0.01)


def building(rng, x, y, yaw, ground, width: float, depth: float, room: float) -> list[Shape]:
    """A block `width` along the street and `depth` back from (x, y) on its front (to the left of
    `yaw`): flat, a taller part behind, or an L with a wing reaching up to `room` m towards the street;
    3 to 25 m high."""
    tall, wall = rng.uniform(3.0, 25.0), albedo(rng, "wall")
    centre = _ahead(x, y, yaw, 0.0, depth / 2)
    shapes: list[Shape] = [Box((*centre, ground + tall / 2), (width / 2, depth / 2, tall / 2), yaw, label=BUILDING,
                               remission=wall)]
    kind = rng.random()
    if kind < 0.3:  # a taller part set back
        upper = tall + rng.uniform(3.0, 10.0)
        back = _ahead(x, y, yaw, 0.0, 0.75 * depth)
        shapes.append(Box((*back, ground + upper / 2), (0.4 * width, depth / 4, upper / 2), yaw, label=BUILDING,
                          remission=wall))
    elif kind < 0.5 and room > 2.0:  # a wing towards the street
        wing = rng.uniform(1.5, min(room, 6.0))
        front = _ahead(x, y, yaw, rng.uniform(-0.3, 0.3) * width, -wing / 2)
        shapes.append(Box((*front, ground + tall * 0.4), (0.2 * width, wing / 2, tall * 0.4), yaw, label=BUILDING,
                          remission=albedo(rng, "wall")))
    return shapes
