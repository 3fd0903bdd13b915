r"""Multi-process training with :mod:`torch.distributed`.

Every rank holds the whole graph and model. The trainer wraps the recommender
in :class:`torch.nn.parallel.DistributedDataParallel`, shards each BPR batch
over ranks, averages the critic's gradients, shards evaluation over users and
writes files on rank 0 only; MMSSL computes each learned-graph refresh once,
sharded over users (:func:`shard`, :func:`all_gather_cat`).

Processes are started by ``pyg-mmssl train --nproc N`` (:func:`launch`) or by
``torchrun``, which sets ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``,
``MASTER_ADDR`` and ``MASTER_PORT`` (:func:`init_from_env`).
"""
import datetime
import hashlib
import os
import socket
import tempfile
import time
import traceback
from typing import Any, Callable, List, Optional, Sequence

import torch
import torch.distributed as dist
from torch import Tensor

ENV_VARS = ('RANK', 'WORLD_SIZE', 'LOCAL_RANK', 'MASTER_ADDR', 'MASTER_PORT')


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


def backend_for(device: torch.device) -> str:
    r"""``"nccl"`` on CUDA, ``"gloo"`` on CPU."""
    return 'nccl' if device.type == 'cuda' else 'gloo'


def env_has_ranks() -> bool:
    r"""Whether this process was started by ``torchrun`` (or :func:`launch`)
    with more than one rank."""
    return int(os.environ.get('WORLD_SIZE', '1')) > 1


def init_from_env(device: str = 'auto', timeout_s: float = 600.
                  ) -> torch.device:
    r"""Joins the process group the environment describes and returns this
    rank's device (``cuda:LOCAL_RANK`` with CUDA). A rank waiting longer
    than ``timeout_s`` in a collective fails instead of hanging."""
    missing = [v for v in ENV_VARS if v not in os.environ]
    if missing:
        raise ValueError(f"distributed training needs the environment "
                         f"variables {', '.join(missing)} (torchrun sets "
                         f"them)")
    from pyg_mmssl.train import resolve_device  # train imports this module
    dev = resolve_device(device)
    if dev.type == 'cuda':
        dev = torch.device('cuda', int(os.environ['LOCAL_RANK']))
        torch.cuda.set_device(dev)
    elif 'OMP_NUM_THREADS' not in os.environ:
        # Ranks on one machine share its cores.
        per_node = int(os.environ.get('LOCAL_WORLD_SIZE',
                                      os.environ['WORLD_SIZE']))
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // per_node))
    dist.init_process_group(backend_for(dev),
                            timeout=datetime.timedelta(seconds=timeout_s))
    return dev


def shutdown():
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


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


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


class RankFailed(RuntimeError):
    r"""A rank of a :func:`launch` run raised; the others were stopped."""


def _entry(rank: int, world: int, port: int, fn: Callable, args: Any,
           error_dir: str):
    os.environ.update(RANK=str(rank), WORLD_SIZE=str(world),
                      LOCAL_RANK=str(rank), LOCAL_WORLD_SIZE=str(world),
                      MASTER_ADDR='127.0.0.1', MASTER_PORT=str(port))
    try:
        fn(*args)
    except BaseException as e:
        # The full traceback goes to stderr; one line per rank, stamped with
        # the time it failed, goes to ``error_dir`` *before* this rank leaves
        # the process group, so the rank that failed first (the cause; the
        # others then fail in a collective) has written its record before
        # any other rank can notice.
        traceback.print_exc()
        message = f"rank {rank}: {type(e).__name__}: {e}"
        tmp = os.path.join(error_dir, f'.rank{rank}')
        with open(tmp, 'w') as f:
            f.write(f"{time.monotonic()!r}\n{message}")
        os.replace(tmp, os.path.join(error_dir, f'rank{rank}'))
        raise RuntimeError(message) from None
    finally:
        shutdown()


def _first_failure(error_dir: str) -> Optional[str]:
    r"""The message of the earliest error record in ``error_dir``."""
    records = []
    for name in os.listdir(error_dir):
        if name.startswith('rank'):
            with open(os.path.join(error_dir, name)) as f:
                stamp, message = f.read().split('\n', 1)
            records.append((float(stamp), message))
    return min(records)[1] if records else None


def launch(fn: Callable, nproc: int, args: Sequence[Any] = ()):
    r"""Runs ``fn(*args)`` in ``nproc`` processes on this machine, each with
    the environment :func:`init_from_env` reads. If any rank raises, the
    others are terminated (none waits forever in a collective) and
    :class:`RankFailed` names the rank that failed first and its error (not
    the ranks that then lost their peer)."""
    import torch.multiprocessing as mp

    if nproc < 1:
        raise ValueError(f"--nproc must be positive, got {nproc}")
    with tempfile.TemporaryDirectory(prefix='pyg_mmssl-ranks-') as error_dir:
        try:
            mp.start_processes(
                _entry, args=(nproc, _free_port(), fn, tuple(args), error_dir),
                nprocs=nproc, join=True, start_method='spawn')
        except mp.ProcessRaisedException as e:
            first = _first_failure(error_dir)
            if first is None:
                last = str(e).strip().splitlines()[-1]
                first = last.split('RuntimeError: ', 1)[-1]
            raise RankFailed(first) from None
        except mp.ProcessExitedException as e:
            first = _first_failure(error_dir)
            raise RankFailed(first or f"rank {e.error_index} exited with "
                             f"code {e.exit_code}") from None
