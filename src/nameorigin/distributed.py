"""Several torch processes training one model with DistributedDataParallel: the process group (gloo on the
CPU, NCCL on CUDA), each rank's share of an epoch's batches, results gathered across ranks, and the launcher
behind ``nameorigin train --nproc N`` (torch's own ``torchrun``)."""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn

from .errors import InputError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Ranks:
    """This process's place among the training processes; ``Ranks()`` is a lone process."""

    rank: int = 0
    world: int = 1

    @property
    def active(self) -> bool:
        return self.world > 1

    @property
    def is_main(self) -> bool:
        """Rank 0 prints, draws the progress bar and writes the checkpoint."""
        return self.rank == 0


def current() -> Ranks:
    if dist.is_available() and dist.is_initialized():
        return Ranks(dist.get_rank(), dist.get_world_size())
    return Ranks()


def launched() -> bool:
    """Whether ``torchrun`` (or another launcher setting its variables) started this process as one of several."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def start(device: torch.device) -> tuple[Ranks, torch.device]:
    """Join the process group the launcher describes (gloo on the CPU, NCCL on CUDA); on CUDA each process
    takes the GPU of its local rank. Returns the ranks and the device to train on."""
    if device.type == "cuda":
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))
        torch.cuda.set_device(device)
    dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    ranks = current()
    log.info("process %d of %d training on %s", ranks.rank, ranks.world, device)
    return ranks, device


def finish(*, wait: bool = True) -> None:
    """Leave the process group. With ``wait`` (the normal end), first wait for every rank: a rank that tears
    the group down while another still has a collective in flight makes gloo abort that other process."""
    if dist.is_available() and dist.is_initialized():
        if wait:
            dist.barrier()
        dist.destroy_process_group()


def wrap(model: nn.Module, ranks: Ranks) -> nn.Module:
    """``model`` under DistributedDataParallel (gradients averaged across ranks in ``backward``), or itself."""
    if not ranks.active:
        return model
    device = next(model.parameters()).device
    # the models' buffers are constants (the one-hot table): no need to broadcast them before every step
    return nn.parallel.DistributedDataParallel(
        model, device_ids=[device] if device.type == "cuda" else None, broadcast_buffers=False
    )


def shard(batches: Sequence, ranks: Ranks) -> list:
    """This rank's share of an epoch's batches (the same list on every rank, from the shared seed): every
    ``world``-th batch from ``rank``, the same number on each rank, so every step's all-reduce has a partner.
    The last ``len(batches) % world`` batches of the (shuffled) epoch are left out."""
    if not ranks.active:
        return list(batches)
    per_rank = len(batches) // ranks.world
    if not per_rank:
        raise InputError(
            f"batch_size: {len(batches)} batch(es) an epoch cannot be shared by {ranks.world} "
            "processes: use fewer processes or smaller batches",
            param="batch_size",
        )
    return list(batches[ranks.rank : per_rank * ranks.world : ranks.world])


def total(values: Sequence[float], ranks: Ranks) -> list[float]:
    """Each value summed over all ranks."""
    if not ranks.active:
        return list(values)
    t = torch.tensor(values, dtype=torch.float64)
    if dist.get_backend() == "nccl":
        t = t.cuda()
    dist.all_reduce(t)
    return t.tolist()


def gather(*tensors: torch.Tensor, ranks: Ranks) -> list[torch.Tensor]:
    """Each tensor concatenated (dimension 0) over all ranks, in rank order, on every rank."""
    if not ranks.active:
        return list(tensors)
    everyone: list = [None] * ranks.world
    dist.all_gather_object(everyone, [t.cpu() for t in tensors])
    return [torch.cat([part[i] for part in everyone]) for i in range(len(tensors))]


def launch(nproc: int, argv: Sequence[str]) -> int:
    """Run ``nameorigin ARGV`` in ``nproc`` processes under torch's ``torchrun`` (standalone: one machine, a free
    port on loopback). Returns the first failing process's exit status, or 0."""
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.run import get_args_parser, run

    # torchrun would set 1 thread a process (and warn); share the cores out instead, unless the user chose
    os.environ.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // nproc)))
    args = get_args_parser().parse_args(
        ["--standalone", "--nproc-per-node", str(nproc), "--module", "nameorigin", *argv]
    )
    try:
        run(args)
    except ChildFailedError as e:
        codes = [f.exitcode for _, f in sorted(e.failures.items()) if f.exitcode]
        return codes[0] if codes and codes[0] > 0 else 1
    return 0


def without_flag(argv: Sequence[str], flag: str) -> list[str]:
    """``argv`` less ``flag VALUE`` and ``flag=VALUE``."""
    out, skip = [], False
    for arg in argv:
        if skip:
            skip = False
        elif arg == flag:
            skip = True
        elif not arg.startswith(flag + "="):
            out.append(arg)
    return out
