"""Knowledge distillation: the student also learns to match a teacher model's class distribution on
every voxel, softened by a temperature (Hinton et al., 2015). A pruned model fine-tuned this way
learns from the float model's full predictions, not only from the labels."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from ..models.checkpoint import checkpoint_config, load_checkpoint
from ..models.config import ModelConfig, model_config_from_dict
from ..models.registry import build_model
from ..tensor import SparseTensor


@dataclass
class Distillation:
    """`teacher` (eval mode, no gradients), the loss's share `weight` taken by the divergence and the
    `temperature` that softens both distributions."""

    teacher: torch.nn.Module
    weight: float
    temperature: float

    def divergence_sum(self, inputs: SparseTensor, student_logits: Tensor) -> Tensor:
        """T^2 x the sum over voxels of KL(teacher || student), both softmaxes of logits / T (the T^2
        keeps the gradient's scale independent of T)."""
        with torch.no_grad():
            teacher_logits = self.teacher(inputs).feats.float()
        t = self.temperature
        student = F.log_softmax(student_logits.float() / t, dim=1)
        teacher = F.log_softmax(teacher_logits / t, dim=1)
        return F.kl_div(student, teacher, reduction="sum", log_target=True) * (t * t)


def load_teacher(checkpoint: str, student_config: ModelConfig, device) -> torch.nn.Module:
    """The model of `checkpoint` (its own config when it stores one, else the student's), in eval mode
    on `device`; it must predict the student's classes."""
    saved = checkpoint_config(checkpoint)
    config = student_config if saved is None else model_config_from_dict(saved, saved.get("name", "teacher"), checkpoint)
    if config.num_classes != student_config.num_classes:
        raise ValueError(f"distill: the teacher {checkpoint} predicts {config.num_classes} classes, "
                         f"the student {student_config.num_classes}")
    teacher = build_model(config)
    load_checkpoint(teacher, checkpoint)
    for parameter in teacher.parameters():
        parameter.requires_grad_(False)
    return teacher.to(device).eval()
