"""Label-map files that dataset tools publish, turned into pointengine's own config layout (config.py).

- semantic-kitti-api (`config/semantic-kitti.yaml`): `labels` (raw id -> name), `color_map` (raw id -> BGR),
  `learning_map`, `learning_map_inv`, `learning_ignore` (training id -> ignored?), `split` (train, valid,
  test -> sequence numbers; "valid" is our "val").
- nuScenes-lidarseg mappings (as other lidarseg tools publish them): `labels` (32 raw names), `labels_16`
  (training id -> name, 0 = noise), `learning_map`. They carry no colours and no inverse map.
"""

from __future__ import annotations

import colorsys


def from_semantic_kitti_api(raw: dict, name: str, where: str) -> dict:
    inverse = {int(k): int(v) for k, v in raw["learning_map_inv"].items()}
    labels = {int(k): str(v) for k, v in raw["labels"].items()}
    bgr = {int(k): v for k, v in raw["color_map"].items()}
    ignored = [int(k) for k, v in raw.get("learning_ignore", {0: True}).items() if v]
    if len(ignored) != 1:
        raise ValueError(f"{where}: learning_ignore must mark exactly one ignored training id, got {ignored}")
    missing = sorted(r for r in inverse.values() if r not in labels or r not in bgr)
    if missing:
        raise ValueError(f"{where}: learning_map_inv names raw ids without a label or colour: {missing}")
    train_ids = sorted(inverse)
    return {
        "name": name,
        "classes": [labels[inverse[t]] for t in train_ids],
        "colors": [list(reversed(bgr[inverse[t]])) for t in train_ids],
        "ignore_index": ignored[0],
        "raw_names": labels,
        "learning_map": raw["learning_map"],
        "learning_map_inv": inverse,
        "point_columns": ["x", "y", "z", "remission"],
        "splits": {("val" if split == "valid" else split): [f"{int(s):02d}" for s in sequences]
                   for split, sequences in (raw.get("split") or {}).items()},
    }


def from_nuscenes_lidarseg(raw: dict, name: str, where: str) -> dict:
    classes = {int(k): str(v) for k, v in raw["labels_16"].items()}
    learning_map = {int(k): int(v) for k, v in raw["learning_map"].items()}
    # No inverse map is published: each class writes the smallest raw id that maps to it.
    inverse = {}
    for raw_id, train_id in sorted(learning_map.items()):
        inverse.setdefault(train_id, raw_id)
    return {
        "name": name,
        "classes": [classes[t] for t in sorted(classes)],
        "colors": distinct_colors(len(classes)),
        "ignore_index": 0,
        "raw_names": raw["labels"],
        "learning_map": learning_map,
        "learning_map_inv": inverse,
        "point_columns": ["x", "y", "z", "intensity", "ring"],
    }


def distinct_colors(n: int) -> list[list[int]]:
    """Black for the ignored class 0, then hues a golden-ratio step apart: neighbours in the class list
    get far-apart colours."""
    colors = [[0, 0, 0]]
    for i in range(1, n):
        r, g, b = colorsys.hsv_to_rgb((i * 0.618033988749895) % 1.0, 0.75, 0.95)
        colors.append([round(255 * r), round(255 * g), round(255 * b)])
    return colors
