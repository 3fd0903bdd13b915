r"""Starting the processes of a multi-process run: :func:`launch` on one
machine, or joining the group ``torchrun`` describes (:func:`init_from_env`).
"""
import datetime
import os
import socket
import tempfile
import time
import traceback
from typing import Any, Callable, Optional, Sequence

import torch
import torch.distributed as dist

from pyg_mmssl.device import resolve_device

ENV_VARS = ('RANK', 'WORLD_SIZE', 'LOCAL_RANK', 'MASTER_ADDR', 'MASTER_PORT')


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
