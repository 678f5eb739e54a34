"""The training loop: global batches of augmented scans voxelized as Segmenter does, collated with
sparse_collate, point-level cross-entropy (the ignored class left out), SGD or AdamW under warm-up +
cosine, validation mIoU and a checkpoint after every epoch.

Everything random is seeded from the settings and the position in the run (shuffle: seed, epoch;
augmentation: seed, epoch, scan; dropout: seed, step), so a run resumed after epoch k ends with the
same weights, bit for bit, as one that never stopped.
"""

from __future__ import annotations

import json
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from ..datasets.metrics import class_iou, confusion_matrix
from ..models.checkpoint import load_checkpoint, save_checkpoint
from ..models.registry import build_model
from ..segment import VoxelizedBatch, voxelize_scans
from ..tensor import sparse_collate
from .data import LabelledFrames, class_weights, epoch_batches, logit_targets, shard
from .distill import Distillation, load_teacher
from .distributed import World, all_sum, init_world, rank_device, wrap_model
from .lovasz import lovasz_softmax
from .schedule import learning_rate
from .settings import SGD_MOMENTUM, TrainSettings
from .state import WEIGHTS_FILE, TrainState, load_train_state, save_train_state, weights_path

IGNORE = -100


@dataclass
class EpochRecord:
    epoch: int
    step: int
    loss: float
    lr: float
    scans_per_s: float
    val_miou: float | None
    val_class_iou: dict[str, float] = field(default_factory=dict)


def train(
    settings: TrainSettings,
    data: str | Path,
    out: str | Path,
    resume: str | Path | None = None,
    device="cpu",
    progress: bool = True,
    log=print,
) -> list[EpochRecord]:
    """Runs (or continues, from `resume`: a run folder) the training `settings` describe on the
    SemanticKITTI-layout folder `data`, writing the weights, state and metrics.jsonl into `out` after
    every epoch. Every scan is checked before the first step. Under torchrun each rank trains on its
    shard of every global batch (see distributed.py). Returns the records of the epochs it ran."""
    device = rank_device(torch.device(device))
    config = settings.model_config()
    train_frames = LabelledFrames(data, settings.train_sequences, config.dataset)
    val_frames = LabelledFrames(data, settings.val_sequences, config.dataset) if settings.val_sequences else None
    weights = class_weights(train_frames.class_points, settings.class_balance, config.dataset)
    weights = None if weights is None else weights.to(device)
    world = init_world(device)
    if settings.batch_size < world.size:
        raise ValueError(f"batch_size ({settings.batch_size}) must be >= the number of processes ({world.size})")
    state = load_train_state(resume) if resume is not None else None

    torch.manual_seed(settings.seed)
    model = build_model(config)
    if state is not None:
        load_checkpoint(model, weights_path(resume))
    elif settings.init is not None:
        report = load_checkpoint(model, settings.init)
        if world.is_main:
            log(f"init from {settings.init}: {report}")
    model.to(device)
    network = wrap_model(model, world, device)
    distill = None if settings.distill is None else Distillation(
        load_teacher(settings.distill, config, device), settings.distill_weight, settings.distill_temperature)
    optimizer = build_optimizer(settings, model)
    if state is not None:
        optimizer.load_state_dict(state.optimizer)

    steps_per_epoch = len(epoch_batches(len(train_frames), settings.batch_size, settings.seed, 0, world.size))
    if steps_per_epoch == 0:
        raise ValueError(f"{len(train_frames)} training scans cannot give each of {world.size} processes one")
    total_steps = steps_per_epoch * settings.epochs
    warmup_steps = round(settings.warmup_epochs * steps_per_epoch)
    step = state.step if state is not None else 0
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    records = []
    first = state.epochs_done if state is not None else 0
    if first >= settings.epochs and world.is_main:
        log(f"{resume}: all {settings.epochs} epochs are done already; nothing to train")
    for epoch in range(first, settings.epochs):
        model.train()
        batches = epoch_batches(len(train_frames), settings.batch_size, settings.seed, epoch, world.size)
        bar = tqdm(batches, desc=f"epoch {epoch + 1}/{settings.epochs}", disable=not (progress and world.is_main),
                   file=sys.stderr, dynamic_ncols=True)
        start, loss_sum, scans = time.perf_counter(), 0.0, 0
        for batch in bar:
            lr = learning_rate(step, settings.lr, warmup_steps, total_steps)
            for group in optimizer.param_groups:
                group["lr"] = lr
            torch.manual_seed(_step_seed(settings.seed, step))  # dropout masks
            scans_here = [train_frames.load_augmented(i, settings.seed, epoch)
                          for i in shard(batch, world.rank, world.size)]
            loss = train_step(network, optimizer, config, scans_here, world, device, weights, distill,
                              settings.lovasz_weight)
            step += 1
            loss_sum += loss
            scans += len(batch)
            bar.set_postfix(loss=f"{loss:.3f}", lr=f"{lr:.2e}", scans_s=f"{scans / (time.perf_counter() - start):.2f}")
        bar.close()
        elapsed = time.perf_counter() - start
        iou = _validate(model, val_frames, config, world, device) if val_frames is not None else None
        record = EpochRecord(epoch + 1, step, loss_sum / max(1, len(batches)), lr, scans / elapsed,
                             None if iou is None else float(np.nanmean(list(iou.values()))), iou or {})
        records.append(record)
        if world.is_main:
            save_checkpoint(model, out / WEIGHTS_FILE, config.to_dict())
            save_train_state(out, TrainState(epoch + 1, step, settings.to_dict(), optimizer.state_dict()))
            with (out / "metrics.jsonl").open("a") as metrics:
                metrics.write(json.dumps(record.__dict__) + "\n")
            miou = "" if record.val_miou is None else f", val mIoU {100 * record.val_miou:.1f}%"
            log(f"epoch {record.epoch}/{settings.epochs}: loss {record.loss:.4f}{miou}, "
                f"{record.scans_per_s:.2f} scans/s; saved {out / WEIGHTS_FILE}")
    return records


def build_optimizer(settings: TrainSettings, model: torch.nn.Module) -> torch.optim.Optimizer:
    """The optimizer `pointengine train` steps: SGD (Nesterov momentum) or AdamW, in torch's fused
    kernels (one pass over all parameters: a MinkUNet cr 0.5 step 10 -> 2.8 ms for SGD, 14 -> 3.6 ms
    for AdamW on 2 threads)."""
    if settings.optimizer == "sgd":
        return torch.optim.SGD(model.parameters(), lr=settings.lr, momentum=SGD_MOMENTUM, nesterov=True,
                               weight_decay=settings.weight_decay, fused=True)
    return torch.optim.AdamW(model.parameters(), lr=settings.lr, weight_decay=settings.weight_decay, fused=True)


def _step_seed(seed: int, step: int) -> int:
    return int(np.random.SeedSequence([seed, step]).generate_state(1)[0])


def collate(config, scans: list, device) -> VoxelizedBatch:
    """Each scan voxelized alone (Segmenter's voxelization), then one batch through sparse_collate;
    `inverse` indexes the collated rows."""
    parts = [voxelize_scans(config, [points], device) for points in scans]
    offsets = np.cumsum([0] + [p.tensor.num_sites for p in parts[:-1]]).tolist()
    inverse = torch.cat([p.inverse + offset for p, offset in zip(parts, offsets)])
    counts = tuple(p.point_counts[0] for p in parts)
    return VoxelizedBatch(sparse_collate([p.tensor for p in parts]), inverse, counts)


def train_step(network, optimizer, config, scans: list, world: World, device, weights=None,
               distill: Distillation | None = None, lovasz_weight: float = 0.0) -> float:
    """One optimizer step on this rank's scans of a global batch; returns the global batch's mean loss
    (weighted by `weights`, one per logit column, when given: data.class_weights), plus `lovasz_weight`
    x the mean over the batch's scans of their Lovász-softmax loss when that is > 0. With `distill`,
    the loss is (1 - w) x that + w x the mean over the batch's voxels of the teacher's divergence."""
    batch = collate(config, [s.points for s in scans], device)
    target = logit_targets(torch.cat([s.labels for s in scans]), config.dataset, IGNORE).to(device)
    voxel_logits = network(batch.tensor).feats
    logits = voxel_logits.index_select(0, batch.inverse.to(device))
    summed = F.cross_entropy(logits.float(), target, weight=weights, ignore_index=IGNORE, reduction="sum")
    known = target != IGNORE
    weight = known.sum() if weights is None else weights.index_select(0, target[known]).sum()
    totals = all_sum(torch.stack([summed.detach(), torch.as_tensor(weight, dtype=summed.dtype, device=device)]), world)
    total_weight = totals[1].clamp(min=1e-12)
    # DDP averages gradients over ranks: times world.size makes it the global batch's (weighted) mean.
    loss = summed * world.size / total_weight
    reported = totals[0] / total_weight
    if lovasz_weight > 0:
        counts = batch.point_counts
        lovasz = sum(lovasz_softmax(scan_logits[labelled], scan_target[labelled]) for scan_logits, scan_target, labelled
                     in zip(logits.split(counts), target.split(counts), known.split(counts)))
        lovasz_totals = all_sum(torch.stack([lovasz.detach(), torch.tensor(float(len(scans)), device=device)]), world)
        loss = loss + lovasz_weight * lovasz * world.size / lovasz_totals[1]
        reported = reported + lovasz_weight * lovasz_totals[0] / lovasz_totals[1]
    if distill is not None:
        divergence = distill.divergence_sum(batch.tensor, voxel_logits)
        voxels = torch.tensor(float(voxel_logits.shape[0]), dtype=divergence.dtype, device=device)
        kd_totals = all_sum(torch.stack([divergence.detach(), voxels]), world)
        loss = (1 - distill.weight) * loss + distill.weight * divergence * world.size / kd_totals[1]
        reported = (1 - distill.weight) * reported + distill.weight * kd_totals[0] / kd_totals[1]
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    return float(reported)


@torch.no_grad()
def _validate(model, frames: LabelledFrames, config, world: World, device) -> dict[str, float]:
    """Per-class IoU (%-free fractions, classes present or predicted) over the validation scans, each
    rank taking its share of them."""
    model.eval()
    classes = config.dataset.num_classes
    confusion = torch.zeros(classes, classes, dtype=torch.int64)
    predicted = torch.tensor(config.dataset.predicted_classes)
    for index in shard(list(range(len(frames))), world.rank, world.size):
        scan = frames.load(index)
        batch = voxelize_scans(config, [scan.points], device)
        logits = model(batch.tensor).feats.float().cpu().index_select(0, batch.inverse)
        pred = predicted.index_select(0, logits.argmax(1))
        confusion += confusion_matrix(pred, scan.labels, classes, config.dataset.ignore_index)
    confusion = all_sum(confusion.to(device), world).cpu()
    iou = class_iou(confusion, config.dataset.ignore_index)
    return {name: float(v) for name, v in zip(config.dataset.classes, iou.tolist()) if v == v}
