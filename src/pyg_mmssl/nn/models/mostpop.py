from typing import Dict, Optional

import torch
from torch import Tensor

from pyg_mmssl.nn.models.base import RecEmbedding, Recommender


class MostPop(Recommender):
    r"""The popularity baseline: every user gets the items with the most
    training interactions,

    .. math::
        s_{ui} = \deg_{\mathrm{train}}(i),

    as one-dimensional embeddings :math:`\mathbf{e}_u = 1` and
    :math:`\mathbf{e}_i = \deg(i)`, so it ranks through the same full-ranking
    evaluation as every other model (training items excluded; ties in the
    order :func:`torch.topk` gives). It has no parameters: the trainer
    evaluates it as built, without training (``best_epoch`` 0). It is the
    sanity row of a comparison: a trained model below it has learned less
    than the item counts tell.

    Args:
        num_users (int): Number of users.
        num_items (int): Number of items.
        train_edge_index (torch.Tensor): ``[2, E]`` training (user, item)
            pairs, whose item counts are the scores.
        backend (str, optional): Unused (no propagation); accepted as by
            every model.
    """
    trainable = False

    def __init__(self, num_users: int, num_items: int,
                 train_edge_index: Tensor, backend: Optional[str] = None):
        super().__init__(num_users, num_items, train_edge_index, backend)

    def get_embedding(self) -> RecEmbedding:
        index = self.train_edge_index
        count = torch.bincount(index[1], minlength=self.num_items)
        return RecEmbedding(index.new_ones(self.num_users, 1).float(),
                            count.float().view(-1, 1))

    def loss(self, user: Tensor, pos: Tensor, neg: Tensor,
             out: Optional[RecEmbedding] = None) -> Dict[str, Tensor]:
        raise NotImplementedError("MostPop has nothing to train: evaluate "
                                  "it as built")
