"""A seeded synthetic lidar scan: a Velodyne HDL-64E on a car roof (sensor.py) ray-cast over a
procedural street (layout.py: roads, junctions and the strips along them; scene.py and objects.py:
what stands on them), labelled with the SemanticKITTI training ids (kitti_ids.py). Coordinates are in
the sensor frame, as in KITTI: x forward, y left, z up.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
from tqdm import tqdm

from .kitti_ids import (  # the training ids every label is one of
    BICYCLE, BICYCLIST, BUILDING, CAR, FENCE, MOTORCYCLE, MOTORCYCLIST, OTHER_GROUND, OTHER_VEHICLE, PARKING, PERSON,
    POLE, ROAD, SIDEWALK, TERRAIN, TRAFFIC_SIGN, TRUCK, TRUNK, VEGETATION,
)
from .layout import draw_layout
from .raycast import RangeImage
from .scan import LidarScan
from .scene import Scene
from .sensor import Pose, block_ego_car, hdl64_elevations, returns

TRAINING_IDS = (CAR, BICYCLE, MOTORCYCLE, TRUCK, OTHER_VEHICLE, PERSON, BICYCLIST, MOTORCYCLIST, ROAD, PARKING,
                SIDEWALK, OTHER_GROUND, BUILDING, FENCE, VEGETATION, TRUNK, TERRAIN, POLE, TRAFFIC_SIGN)
GENERATED_IDS = tuple(i for i in TRAINING_IDS if i != OTHER_GROUND)  # what the generator labels with


def generate_scan(
    seed: int = 0,
    beams: int = 64,
    azimuth_steps: int = 2048,
    max_range: float = 80.0,
    min_range: float = 1.0,
    range_noise: float = 0.015,
    dropout: float = 0.01,
    pose: Pose | None = None,
) -> LidarScan:
    """One scan: points float32 [N, 4] (x, y, z, remission in [0, 1)), labels int64 [N].

    The same seed gives the same scan, bit for bit. `pose` (height, roll, pitch) replaces the one
    drawn from the seed, the street staying the same. `range_noise` is the standard deviation of the
    range error (m) near the sensor (it grows with range); `dropout` the fraction of returns lost on
    every beam (some beams lose more); returns nearer than `min_range`, or on the sensor's own car,
    are dropped.
    """
    if beams < 1 or azimuth_steps < 1:
        raise ValueError(f"beams and azimuth_steps must be >= 1, got {beams} and {azimuth_steps}")
    if not 0 < min_range < max_range:
        raise ValueError(f"need 0 < min_range < max_range, got min_range={min_range}, max_range={max_range}")
    if pose is not None and not (pose.height > 0 and abs(pose.roll) < 0.5 and abs(pose.pitch) < 0.5):
        raise ValueError(f"pose needs height > 0 and |roll|, |pitch| < 0.5 rad, got {pose}")
    rng = np.random.default_rng(seed)
    drawn = Pose.draw(rng)  # drawn even when `pose` is given, so the street stays the same
    pose = drawn if pose is None else pose
    layout = draw_layout(rng)
    image = RangeImage(hdl64_elevations(beams, calibrated=True), azimuth_steps, max_range, pose.rotation())
    layout.cast_ground(image, pose.height)
    for shape in Scene(layout, rng, -pose.height).shapes():
        image.cast(shape, rng)
    block_ego_car(image)
    return returns(image, rng, min_range, range_noise, dropout)


def frame_seed(seed: int, sequence: str, frame: int) -> int:
    """The generate_scan seed of one frame of a synthetic dataset: every (seed, sequence, frame) its
    own street, the same on every machine."""
    return int(np.random.SeedSequence([seed, int(sequence), frame]).generate_state(1)[0])


def write_synthetic_dataset(root, sequences: dict[str, int], seed: int = 0, progress: bool = False,
                            **scan_options) -> Path:
    """Writes generated scans in the SemanticKITTI layout under `root`: for each sequence name and
    frame count, `sequences/<seq>/velodyne/<frame>.bin` (float32 x, y, z, remission) and
    `sequences/<seq>/labels/<frame>.label` (uint32 raw SemanticKITTI ids, instance 0), frames
    numbered 000000 up. Seeded per frame (frame_seed); `scan_options` go to generate_scan; `progress`
    shows a bar per sequence. Returns root."""
    from ..outputs import write_labels
    from .config import load_dataset_config

    root = Path(root)
    config = load_dataset_config("semantickitti")
    for sequence, frames in sequences.items():
        if not (sequence.isdigit() and frames >= 1):
            raise ValueError(f"sequences maps digit names to frame counts >= 1, got {sequence!r}: {frames!r}")
        folder = root / "sequences" / sequence
        (folder / "velodyne").mkdir(parents=True, exist_ok=True)
        for frame in tqdm(range(frames), desc=f"sequence {sequence}", disable=not progress, file=sys.stderr):
            scan = generate_scan(seed=frame_seed(seed, sequence, frame), **scan_options)
            scan.points.numpy().astype("<f4").tofile(folder / "velodyne" / f"{frame:06d}.bin")
            write_labels(folder / "labels" / f"{frame:06d}.label", config.raw_labels(scan.labels).numpy(), "label")
    return root
