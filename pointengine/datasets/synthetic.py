"""A seeded synthetic lidar scan: a Velodyne HDL-64E on a car roof (sensor.py) ray-cast over a
procedural street (layout.py: roads, junctions and the strips along them; scene.py and objects.py:
what stands on them), labelled with the SemanticKITTI training ids (kitti_ids.py). Coordinates are in
the sensor frame, as in KITTI: x forward, y left, z up.

Folders of such scans in both benchmark layouts: write_synthetic_dataset (SemanticKITTI) and
write_synthetic_nuscenes (nuScenes-lidarseg, 32 beams as the HDL-32E).
"""

from __future__ import annotations

import hashlib
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

# The nuScenes-lidarseg raw id (datasets/nuscenes.yaml) of each SemanticKITTI training id, index = training
# id. nuScenes labels a rider with the cycle, poles, signs and fences as static.manmade, parking lanes as
# driveable surface, trunks as vegetation; other-vehicle becomes a rigid bus.
NUSCENES_RAW = np.zeros(len(TRAINING_IDS) + 1, dtype=np.uint8)
for kitti_id, nuscenes_id in {CAR: 17, BICYCLE: 14, MOTORCYCLE: 21, TRUCK: 23, OTHER_VEHICLE: 16, PERSON: 2,
                              BICYCLIST: 14, MOTORCYCLIST: 21, ROAD: 24, PARKING: 24, SIDEWALK: 26, OTHER_GROUND: 25,
                              BUILDING: 28, FENCE: 28, VEGETATION: 30, TRUNK: 30, TERRAIN: 27, POLE: 28,
                              TRAFFIC_SIGN: 28}.items():
    NUSCENES_RAW[kitti_id] = nuscenes_id
NUSCENES_START = 1_532_402_927_647_951  # microseconds: the first key frame's time; key frames come at 2 Hz


def generate_scan(
    seed: int = 0,
    beams: int = 64,
    azimuth_steps: int = 2048,
    max_range: float = 80.0,
    min_range: float = 1.0,
    range_noise: float = 0.025,
    range_bias: float = 0.02,
    dropout: float = 0.01,
    pose: Pose | None = None,
    rare: float = 1.0,
) -> LidarScan:
    """One scan: points float32 [N, 4] (x, y, z, remission in [0, 1)), labels int64 [N].

    The same seed gives the same scan, bit for bit. `pose` (height, roll, pitch) replaces the one
    drawn from the seed, the street staying the same. `range_noise` is the standard deviation of the
    range error (m) near the sensor (it grows with range), `range_bias` that of the beams' own fixed
    range errors (the same unit in every scan); `dropout` the fraction of returns lost on
    every beam (some beams lose more); returns nearer than `min_range`, or on the sensor's own car,
    are dropped. `rare` > 1 puts more of the rare classes in the street (Scene); a training set can
    take them more often than the scans a model is judged on.
    """
    if not 0.0 < rare <= 10.0:
        raise ValueError(f"rare must be in (0, 10], got {rare}")
    if not (range_noise >= 0.0 and range_bias >= 0.0):
        raise ValueError(f"range_noise and range_bias must be >= 0, got {range_noise} and {range_bias}")
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
    for shape in Scene(layout, rng, -pose.height, rare).shapes():
        image.cast(shape, rng)
    block_ego_car(image)
    return returns(image, rng, min_range, range_noise, range_bias, dropout)


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


def write_synthetic_nuscenes(root, scenes: dict[str, int], seed: int = 0, version: str = "v1.0-trainval",
                             tables: bool = True, progress: bool = False, **scan_options) -> Path:
    """Writes generated 32-beam scans in the nuScenes-lidarseg layout under `root`: for each scene name
    ("scene-0001") and key-frame count, `samples/LIDAR_TOP/<name>.pcd.bin` (float32 x, y, z, intensity
    0-255, ring 0-31, in the nuScenes lidar frame: x right, y forward, z up) and its labels as raw
    lidarseg ids (NUSCENES_RAW). With `tables`, the devkit tables of `version` (nuscenes.write_tables)
    link the scans to tokens and scenes and the labels are `lidarseg/<version>/<token>_lidarseg.bin`;
    without, a plain folder whose labels are `lidarseg/<version>/<scan name>_lidarseg.bin`. Seeded per
    frame as write_synthetic_dataset (scene number for sequence); `scan_options` go to generate_scan.
    Returns root."""
    from ..outputs import write_bytes_atomically
    from .nuscenes import Keyframe, write_tables

    root = Path(root)
    options = {"beams": 32, **scan_options}
    elevations = hdl64_elevations(options["beams"], calibrated=True)
    keyframes = []
    for scene, frames in scenes.items():
        number = scene.removeprefix("scene-")
        if not (number.isdigit() and scene.startswith("scene-") and frames >= 1):
            raise ValueError(f"scenes maps names scene-NNNN to key-frame counts >= 1, got {scene!r}: {frames!r}")
        for frame in tqdm(range(frames), desc=scene, disable=not progress, file=sys.stderr):
            scan = generate_scan(seed=frame_seed(seed, number, frame), **options)
            timestamp = NUSCENES_START + 500_000 * len(keyframes)
            name = f"n000-synthetic-{scene}__LIDAR_TOP__{timestamp}"
            token = hashlib.sha1(f"{seed}/{scene}/{frame}".encode()).hexdigest()[:32]
            scan_file = f"samples/LIDAR_TOP/{name}.pcd.bin"
            label_file = f"lidarseg/{version}/{token if tables else name}_lidarseg.bin"
            write_bytes_atomically(root / scan_file, _nuscenes_points(scan.points.numpy(), elevations).tobytes())
            write_bytes_atomically(root / label_file, NUSCENES_RAW[scan.labels.numpy()].tobytes())
            keyframes.append(Keyframe(scene, token, timestamp, scan_file, label_file))
    if tables:
        write_tables(root, version, keyframes)
    return root


def _nuscenes_points(kitti: np.ndarray, elevations: np.ndarray) -> np.ndarray:
    """float32 [N, 5] rows of the nuScenes layout from generate_scan's [N, 4]: the axes turned a quarter
    (nuScenes' y is KITTI's x), remission as 0-255 intensity, and each point's ring: the beam whose
    elevation its direction has (range noise moves a point along its ray, so the direction is exact)."""
    x, y, z = (kitti[:, i].astype(np.float64) for i in range(3))
    elevation = np.arctan2(z, np.hypot(x, y))
    ring = np.abs(elevation[:, None] - elevations[None, :]).argmin(1)
    rows = np.stack([-y, x, z, np.round(kitti[:, 3] * 255.0), ring], axis=1)
    return rows.astype("<f4")
