r"""Functions the distributed tests run in spawned ranks (an importable
module: spawned processes look functions up by module name)."""
import time

import torch.distributed as dist

from pyg_mmssl.distributed import (all_gather_cat, get_rank, init_from_env,
                                   shard)


def fail_on_rank_1():
    init_from_env('cpu', timeout_s=120)
    if get_rank() == 1:
        time.sleep(0.5)
        raise ValueError('boom')
    dist.barrier()  # rank 1 never arrives: without launch's care, a hang


def gather_shards(path):
    init_from_env('cpu')
    import torch
    part = torch.arange(11)[shard(11)]
    out = all_gather_cat(part.view(-1, 1).repeat(1, 2) * (get_rank() + 1))
    if get_rank() == 0:
        torch.save(out, path)
