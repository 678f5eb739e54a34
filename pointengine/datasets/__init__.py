"""Lidar datasets: readers, label maps, a synthetic scan generator and segmentation metrics."""

from .config import DatasetConfig, load_dataset_config
from .frames import Frame, load_frame
from .metrics import Scores, class_iou, confusion_matrix, mean_iou, nuscenes_scores, semantickitti_scores
from .nuscenes import read_lidarseg, read_nuscenes_points
from .scan import LidarScan
from .semantickitti import SemanticKITTI, load_scan, read_labels, read_points
from .synthetic import generate_scan, write_synthetic_dataset, write_synthetic_nuscenes

__all__ = [
    "DatasetConfig",
    "Frame",
    "LidarScan",
    "Scores",
    "SemanticKITTI",
    "class_iou",
    "confusion_matrix",
    "generate_scan",
    "load_dataset_config",
    "load_frame",
    "load_scan",
    "mean_iou",
    "nuscenes_scores",
    "read_labels",
    "read_lidarseg",
    "read_nuscenes_points",
    "read_points",
    "semantickitti_scores",
    "write_synthetic_dataset",
    "write_synthetic_nuscenes",
]
