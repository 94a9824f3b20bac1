"""One process or data-parallel under torchrun: the device, the rank, and sums across ranks.

``torchrun --nproc_per_node N -m insarcast train ...`` sets WORLD_SIZE, RANK and LOCAL_RANK; then
the process group starts with NCCL on GPUs and gloo on CPUs. Without torchrun everything runs in one
process and the collective calls are no-ops.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np
import torch
import torch.distributed as dist


@dataclass(frozen=True)
class Context:
    rank: int
    world_size: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    def sum(self, array: np.ndarray) -> np.ndarray:
        """Element-wise sum of ``array`` over all ranks (float64)."""
        if not self.distributed:
            return array
        tensor = torch.as_tensor(np.ascontiguousarray(array, np.float64), device=self.device)
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
        return tensor.cpu().numpy()

    def broadcast(self, value: object) -> object:
        """``value`` from rank 0 on every rank."""
        if not self.distributed:
            return value
        box = [value]
        dist.broadcast_object_list(box, src=0)
        return box[0]


def setup(*, device: str | None = None) -> Context:
    """Join the process group when started by torchrun; pick the device (the GPU when there is one)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local = int(os.environ.get("LOCAL_RANK", "0"))
    if device is None:
        device = f"cuda:{local}" if torch.cuda.is_available() else "cpu"
    dev = torch.device(device)
    if dev.type == "cuda":
        torch.cuda.set_device(dev)
    if world > 1 and not dist.is_initialized():
        dist.init_process_group(backend="nccl" if dev.type == "cuda" else "gloo")
    return Context(rank=rank, world_size=world, device=dev)


def teardown() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()
