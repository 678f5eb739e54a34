"""Data-parallel training under torchrun: the process group from torchrun's environment, and the
model wrapped in DistributedDataParallel with global-batch BatchNorm statistics. The reductions at the
end (all_sum, all_max, all_lists) serve the sharded benchmark too (pointengine.evaluate).

For one process at global batch B and N processes sharing it to end with the same weights: every
rank reads whole scans of the same global batch (data.shard), BatchNorm normalises over the global
batch (nn.norm.batch_norm_features), and the loss is divided by the global count of labelled points
and multiplied by the world size, because DDP averages the gradients over ranks.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

from ..nn.norm import GlobalBatchNorm1d


@dataclass(frozen=True)
class World:
    rank: int = 0
    size: int = 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def init_world(device: torch.device) -> World:
    """The process group torchrun describes (WORLD_SIZE, RANK, MASTER_ADDR, ...): gloo on CPU, nccl on
    CUDA; a world of one without torchrun or when a group already exists (a test's)."""
    if dist.is_available() and dist.is_initialized():
        return World(dist.get_rank(), dist.get_world_size())
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return World()
    dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return World(dist.get_rank(), dist.get_world_size())


def rank_device(device: torch.device) -> torch.device:
    """Under torchrun, "cuda" means this process's GPU, cuda:LOCAL_RANK."""
    if device.type == "cuda" and device.index is None:
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
        torch.cuda.set_device(device)
    return device


def wrap_model(model: torch.nn.Module, world: World, device: torch.device) -> torch.nn.Module:
    """`model` itself in a world of one; otherwise DDP over it, its plain BatchNorm1d layers (SPVCNN's
    point MLPs) switched to global statistics. Parameters start as rank 0's (DDP broadcasts them)."""
    if world.size == 1:
        return model
    for module in model.modules():
        if type(module) is torch.nn.BatchNorm1d:
            # Same parameters, buffers and state-dict keys: only forward changes.
            module.__class__ = GlobalBatchNorm1d
    device_ids = [device.index] if device.type == "cuda" else None
    return torch.nn.parallel.DistributedDataParallel(model, device_ids=device_ids)


def all_sum(value: torch.Tensor, world: World) -> torch.Tensor:
    """The sum over ranks of a tensor that needs no gradient (counts, confusion matrices)."""
    if world.size > 1:
        value = value.clone()
        dist.all_reduce(value)
    return value



def all_max(value: torch.Tensor, world: World) -> torch.Tensor:
    """The largest value over ranks, element by element (wall times, peak memory)."""
    if world.size > 1:
        value = value.clone()
        dist.all_reduce(value, op=dist.ReduceOp.MAX)
    return value


def all_lists(items: list, world: World) -> list:
    """Every rank's list of picklable items, concatenated in rank order (the same on every rank)."""
    if world.size == 1:
        return list(items)
    gathered = [None] * world.size
    dist.all_gather_object(gathered, items)
    return [item for part in gathered for item in part]
