r"""Collectives over the ranks of a :mod:`torch.distributed` run; each is
the identity (or a no-op) in a single process."""
import hashlib
from typing import Any, List, Sequence

import torch
import torch.distributed as dist
from torch import Tensor


def is_distributed() -> bool:
    r"""Whether a process group with more than one rank is running."""
    return (dist.is_available() and dist.is_initialized()
            and dist.get_world_size() > 1)


def get_rank() -> int:
    return dist.get_rank() if is_distributed() else 0


def get_world_size() -> int:
    return dist.get_world_size() if is_distributed() else 1


def is_main() -> bool:
    r"""Whether this process writes files and prints (rank 0)."""
    return get_rank() == 0


def shard(num: int) -> slice:
    r"""This rank's contiguous part of ``range(num)`` (sizes differ by at
    most one)."""
    rank, world = get_rank(), get_world_size()
    size, rest = divmod(num, world)
    start = rank * size + min(rank, rest)
    return slice(start, start + size + (1 if rank < rest else 0))


def broadcast_(tensor: Tensor, src: int = 0) -> Tensor:
    r"""Overwrites ``tensor`` with rank ``src``'s, in place."""
    if is_distributed():
        dist.broadcast(tensor, src)
    return tensor


def all_reduce_sum_(tensor: Tensor) -> Tensor:
    if is_distributed():
        dist.all_reduce(tensor)
    return tensor


def all_gather_cat(tensor: Tensor) -> Tensor:
    r"""The ranks' ``tensor`` concatenated along the first dimension in rank
    order; the first dimension may differ between ranks."""
    if not is_distributed():
        return tensor
    world = get_world_size()
    size = torch.tensor([tensor.size(0)], device=tensor.device)
    sizes = [torch.zeros_like(size) for _ in range(world)]
    dist.all_gather(sizes, size)
    sizes = [int(s) for s in sizes]
    padded = tensor.new_zeros((max(sizes), ) + tuple(tensor.shape[1:]))
    padded[:tensor.size(0)] = tensor
    parts = [torch.empty_like(padded) for _ in range(world)]
    dist.all_gather(parts, padded)
    return torch.cat([p[:n] for p, n in zip(parts, sizes)])


def average_gradients_(params: Sequence[torch.nn.Parameter]):
    r"""Replaces every gradient by its mean over ranks (one flat
    all-reduce)."""
    if not is_distributed():
        return
    grads = [p.grad for p in params if p.grad is not None]
    if not grads:
        return
    flat = torch.cat([g.reshape(-1) for g in grads])
    dist.all_reduce(flat)
    flat /= get_world_size()
    offset = 0
    for g in grads:
        g.copy_(flat[offset:offset + g.numel()].view_as(g))
        offset += g.numel()


def parameter_fingerprints(module: torch.nn.Module) -> List[str]:
    r"""A SHA-256 prefix of ``module``'s parameters on every rank, in rank
    order (equal strings: bitwise equal parameters)."""
    digest = hashlib.sha256()
    for p in module.parameters():
        digest.update(p.detach().cpu().contiguous().numpy().tobytes())
    mine = digest.hexdigest()[:16]
    if not is_distributed():
        return [mine]
    out: List[Any] = [None] * get_world_size()
    dist.all_gather_object(out, mine)
    return out
