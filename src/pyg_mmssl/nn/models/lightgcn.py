from typing import Dict, Optional

from torch import Tensor
from torch_geometric.nn.models import LightGCN as PyGLightGCN

from pyg_mmssl.nn.models.base import (ITEM_BIASES, RecEmbedding,
                                      Recommender)


class LightGCN(Recommender):
    r"""The LightGCN baseline from the `"LightGCN: Simplifying and Powering
    Graph Convolution Network for Recommendation"
    <https://arxiv.org/abs/2002.02126>`_ paper, as PyG's own
    :class:`torch_geometric.nn.models.LightGCN` (users and items share one
    index space, items offset by :math:`U`), propagating through a normalised
    adjacency that is built once per device instead of a ``gcn_norm`` per
    call:

    .. math::
        \mathbf{E}^{(l+1)} = \hat{\mathbf{A}} \mathbf{E}^{(l)}, \qquad
        \mathbf{E} = \frac{1}{L+1} \sum_{l=0}^{L} \mathbf{E}^{(l)}

    trained with BPR plus :math:`\lambda \|\mathbf{E}^{(0)}_{batch}\|^2 / B`.

    Args:
        num_users (int): Number of users.
        num_items (int): Number of items.
        train_edge_index (torch.Tensor): ``[2, E]`` training (user, item)
            pairs, the propagation graph.
        embedding_dim (int): Embedding size. (default: :obj:`64`)
        num_layers (int): Propagation layers. (default: :obj:`3`)
        reg (float): L2 weight on the batch's layer-0 embeddings.
            (default: :obj:`1e-4`)
        item_bias (str): A learned per-item score bias from
            :meth:`~pyg_mmssl.nn.models.base.Recommender.init_item_bias`:
            :obj:`"none"`, :obj:`"zero"` or :obj:`"popularity"` (starting
            at the log training counts). (default: :obj:`"none"`)
        item_bias_scale (float): The popularity prior's factor.
            (default: :obj:`1.0`)
        backend (str, optional): Propagation backend (see
            :mod:`pyg_mmssl.nn.adjacency`); fastest for the device if omitted.
    """
    choices = {**Recommender.choices, 'item_bias': ITEM_BIASES}

    def __init__(self, num_users: int, num_items: int,
                 train_edge_index: Tensor, embedding_dim: int = 64,
                 num_layers: int = 3, reg: float = 1e-4,
                 item_bias: str = 'none', item_bias_scale: float = 1.0,
                 backend: Optional[str] = None):
        super().__init__(num_users, num_items, train_edge_index, backend)
        self.reg = reg
        self.model = PyGLightGCN(num_users + num_items, embedding_dim,
                                 num_layers, normalize=False)
        self.init_item_bias(item_bias, item_bias_scale)

    def reset_parameters(self):
        self.model.reset_parameters()
        self.reset_item_bias()

    def get_embedding(self) -> RecEmbedding:
        adj = self.homogeneous_graph('sym')
        return self.with_item_bias(self.split_nodes(
            self.model.get_embedding(adj.adj, adj.edge_weight)))

    def loss(self, user: Tensor, pos: Tensor, neg: Tensor,
             out: Optional[RecEmbedding] = None) -> Dict[str, Tensor]:
        return self.bpr_terms(self() if out is None else out, user, pos, neg,
                              self.model.embedding.weight)
