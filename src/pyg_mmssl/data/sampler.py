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
    """
    def __init__(self, edge_index: Tensor, num_users: int, num_items: int,
                 batch_size: int = 2048,
                 generator: Optional[torch.Generator] = None):
        if batch_size <= 0:
            raise ValueError(f"batch_size must be positive, got {batch_size}")
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
            yield BPRBatch(user, pos, self.sample_negatives(user))
