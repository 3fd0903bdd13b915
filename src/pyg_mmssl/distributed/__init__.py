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
from .collectives import (all_gather_cat, all_reduce_sum_, average_gradients_,
                          broadcast_, get_rank, get_world_size, is_distributed,
                          is_main, parameter_fingerprints, shard)
from .launch import (ENV_VARS, RankFailed, backend_for, env_has_ranks,
                     init_from_env, launch, shutdown)

__all__ = [
    'ENV_VARS', 'RankFailed', 'all_gather_cat', 'all_reduce_sum_',
    'average_gradients_', 'backend_for', 'broadcast_', 'env_has_ranks',
    'get_rank', 'get_world_size', 'init_from_env', 'is_distributed',
    'is_main', 'launch', 'parameter_fingerprints', 'shard', 'shutdown',
]
