r"""Vectorised BPR sampling: every training interaction once per epoch (in a
random order), each with one uniform negative item the user has not
interacted with in training."""
from typing import Iterator, NamedTuple, Optional

import torch
from torch import Tensor


class BPRBatch(NamedTuple):
    user: Tensor
    pos: Tensor
    neg: Tensor


class BPRSampler:
    r"""Shuffled (user, positive, negative) triples.

    Negatives are drawn uniformly from all items and rejected, all at once,
    when they are training items of the user (a membership test by binary
    search in the sorted keys :math:`u \cdot I + i`); rejected draws are
    redrawn until none is left.

    Args:
        edge_index (torch.Tensor): ``[2, E]`` training (user, item) pairs.
        num_users (int): Number of users.
        num_items (int): Number of items.
        batch_size (int): Triples per batch.
        generator (torch.Generator, optional): Source of randomness; its
            state is part of a training checkpoint.
        rank (int): With :obj:`world_size` > 1, this process's share of
            every batch: all ranks draw the same global batches (same
            generator seed, reshuffled every epoch) and rank ``r`` keeps the
            ``r``-th of :obj:`world_size` contiguous parts.
            (default: :obj:`0`)
        world_size (int): Number of ranks sharing each batch.
            (default: :obj:`1`)
    """
    def __init__(self, edge_index: Tensor, num_users: int, num_items: int,
                 batch_size: int = 2048,
                 generator: Optional[torch.Generator] = None,
                 rank: int = 0, world_size: int = 1):
        if batch_size <= 0:
            raise ValueError(f"batch_size must be positive, got {batch_size}")
        if batch_size < world_size:
            raise ValueError(f"batch_size {batch_size} cannot be shared by "
                             f"{world_size} ranks")
        self.rank, self.world_size = rank, world_size
        self.edge_index = edge_index.cpu()
        self.num_items = num_items
        self.batch_size = batch_size
        self.generator = generator or torch.Generator()
        self.keys = torch.sort(self.edge_index[0] * num_items +
                               self.edge_index[1]).values
        deg = torch.bincount(self.edge_index[0], minlength=num_users)
        full = (deg >= num_items).nonzero().view(-1)
        if full.numel() > 0:
            raise ValueError(f"user {int(full[0])} interacted with every item; "
                             f"no negative item can be sampled for it")

    def __len__(self) -> int:
        return -(-self.edge_index.size(1) // self.batch_size)

    def is_train(self, user: Tensor, item: Tensor) -> Tensor:
        key = user * self.num_items + item
        idx = torch.searchsorted(self.keys, key).clamp_(max=self.keys.numel() - 1)
        return self.keys[idx] == key

    def sample_negatives(self, user: Tensor) -> Tensor:
        neg = torch.randint(self.num_items, user.shape,
                            generator=self.generator)
        redo = self.is_train(user, neg).nonzero().view(-1)
        while redo.numel() > 0:
            neg[redo] = torch.randint(self.num_items, redo.shape,
                                      generator=self.generator)
            redo = redo[self.is_train(user[redo], neg[redo])]
        return neg

    def __iter__(self) -> Iterator[BPRBatch]:
        perm = torch.randperm(self.edge_index.size(1), generator=self.generator)
        for start in range(0, perm.numel(), self.batch_size):
            idx = perm[start:start + self.batch_size]
            user, pos = self.edge_index[0, idx], self.edge_index[1, idx]
            neg = self.sample_negatives(user)
            if self.world_size > 1:
                if user.numel() < self.world_size:
                    break  # a last batch too small to share is skipped
                part = torch.arange(user.numel()).tensor_split(
                    self.world_size)[self.rank]
                user, pos, neg = user[part], pos[part], neg[part]
            yield BPRBatch(user, pos, neg)
