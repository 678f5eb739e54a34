"""Lidar datasets: readers, label maps, a synthetic scan generator and segmentation metrics."""

from .config import DatasetConfig, load_dataset_config
from .metrics import class_iou, confusion_matrix, mean_iou
from .nuscenes import read_nuscenes_points
from .scan import LidarScan
from .semantickitti import SemanticKITTI, load_scan, read_labels, read_points
from .synthetic import generate_scan, write_synthetic_dataset

__all__ = [
    "DatasetConfig",
    "LidarScan",
    "SemanticKITTI",
    "class_iou",
    "confusion_matrix",
    "generate_scan",
    "load_dataset_config",
    "load_scan",
    "mean_iou",
    "read_labels",
    "read_nuscenes_points",
    "read_points",
    "write_synthetic_dataset",
]
