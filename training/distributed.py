"""Data-parallel helpers: process-group setup from torchrun's environment and gradient averaging.

``torchrun --nproc_per_node K -m training.video ...`` sets RANK, WORLD_SIZE, LOCAL_RANK and the
rendezvous variables; without them everything runs in one process and the collectives are no-ops.
The backend is gloo on CPU and nccl on CUDA (each rank on cuda:LOCAL_RANK).

Only the memory modules train, and their forward runs through ``forward_video`` with precomputed
frozen features rather than ``model.forward``, so instead of wrapping the model in
DistributedDataParallel (whose hooks follow ``forward``) the trainable gradients are averaged
explicitly, once per optimizer step, with one flat all-reduce.
"""

from __future__ import annotations

import argparse
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class DistributedContext:
    rank: int
    world_size: int
    local_rank: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1


def device_flag(text: str) -> str:
    """argparse type of ``--device``: ``cpu``, ``cuda`` or ``cuda:N`` (``mps``), refused at parse time when
    this machine cannot run it (no CUDA, or fewer CUDA devices than N+1)."""
    try:
        device = torch.device(text)
    except RuntimeError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a device (cpu, cuda or cuda:N)") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise argparse.ArgumentTypeError(f"{text}: this machine has no CUDA device (use --device cpu)")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise argparse.ArgumentTypeError(f"{text}: this machine has {torch.cuda.device_count()} CUDA devices")
    elif device.type == "mps":
        if not torch.backends.mps.is_available():
            raise argparse.ArgumentTypeError(f"{text}: this machine has no MPS device (use --device cpu)")
    elif device.type != "cpu":
        raise argparse.ArgumentTypeError(f"{text}: training runs on cpu, cuda[:N] or mps")
    return text


def init_distributed(device: str = "cpu") -> DistributedContext:
    """Join the process group torchrun describes (if any) and pick this rank's device."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    target = torch.device(device)
    if target.type == "cuda":
        if not torch.cuda.is_available():
            raise RuntimeError(f"device {device!r} requested but CUDA is not available")
        target = torch.device("cuda", local_rank if world_size > 1 else (target.index or 0))
        torch.cuda.set_device(target)
    if world_size > 1 and not dist.is_initialized():
        dist.init_process_group(backend="nccl" if target.type == "cuda" else "gloo")
    return DistributedContext(rank=rank, world_size=world_size, local_rank=local_rank, device=target)


def shutdown(context: DistributedContext) -> None:
    if context.enabled and dist.is_initialized():
        dist.destroy_process_group()


def barrier(context: DistributedContext) -> None:
    if context.enabled:
        dist.barrier()


def broadcast_parameters(parameters: list[torch.nn.Parameter], context: DistributedContext) -> None:
    """Copy rank 0's values into every rank (all ranks start from identical trainable weights)."""
    if not context.enabled:
        return
    for param in parameters:
        dist.broadcast(param.data, src=0)


def average_gradients(parameters: list[torch.nn.Parameter], context: DistributedContext) -> None:
    """Replace each parameter's gradient by its mean over ranks (missing gradients count as zero)."""
    if not context.enabled:
        return
    grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in parameters]
    flat = torch.cat([g.reshape(-1) for g in grads])  # [sum of numel]
    dist.all_reduce(flat, op=dist.ReduceOp.SUM)
    flat /= context.world_size
    offset = 0
    for param in parameters:
        count = param.numel()
        param.grad = flat[offset : offset + count].view_as(param).clone()
        offset += count


def mean_over_ranks(values: dict[str, float], context: DistributedContext) -> dict[str, float]:
    """Average scalar metrics over ranks (for logging on rank 0)."""
    if not context.enabled or not values:
        return dict(values)
    names = sorted(values)
    tensor = torch.tensor([float(values[name]) for name in names], dtype=torch.float64)
    if context.device.type == "cuda":
        tensor = tensor.to(context.device)
    dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return {name: float(value) / context.world_size for name, value in zip(names, tensor.tolist())}


def broadcast_object(value, context: DistributedContext):
    """Rank 0's ``value`` (any picklable object) on every rank."""
    if not context.enabled:
        return value
    holder = [value]
    dist.broadcast_object_list(holder, src=0)
    return holder[0]
