from typing import Dict, Optional

import torch
import torch.nn.functional as F
from torch import Tensor

from pyg_mmssl.nn.adjacency import Propagation
from pyg_mmssl.nn.conv import MMGCNConv
from pyg_mmssl.nn.models.base import RecEmbedding, Recommender

COMBINES = ('concat', 'add')


class ModalityGCN(torch.nn.Module):
    r"""One modality's branch of MMGCN on the homogeneous user + item graph:
    user preference vectors and projected item features are propagated
    through :obj:`num_layers` layers of aggregation (:class:`MMGCNConv`)
    and combination with the shared ID embeddings:

    .. math::
        \mathbf{h}^{(l)} = \sigma(\mathrm{MMGCNConv}(\mathbf{x}^{(l)})),
        \quad \hat{\mathbf{x}}^{(l)} = \sigma(\mathbf{W}_1^{(l)}
        \mathbf{x}^{(l)}) + \mathbf{e}_{id}

        \mathbf{x}^{(l+1)} = \begin{cases}
        \sigma(\mathbf{W}_2^{(l)} [\mathbf{h}^{(l)} \Vert
        \hat{\mathbf{x}}^{(l)}]) & \text{concat} \\
        \sigma(\mathbf{W}_2^{(l)} \mathbf{h}^{(l)} + \hat{\mathbf{x}}^{(l)})
        & \text{add} \end{cases}

    with :math:`\sigma` the LeakyReLU and :math:`\mathbf{x}^{(0)} =
    \overline{[\mathbf{P}_m; \mathbf{X}^m \mathbf{W}_m]}` (row-normalised).
    """
    def __init__(self, num_users: int, feature_dim: int, dim: int,
                 num_layers: int, combine: str):
        super().__init__()
        self.combine = combine
        self.preference = torch.nn.Parameter(torch.empty(num_users, dim))
        self.proj = torch.nn.Linear(feature_dim, dim)
        self.convs = torch.nn.ModuleList(
            [MMGCNConv(dim, dim) for _ in range(num_layers)])
        self.lins = torch.nn.ModuleList(
            [torch.nn.Linear(dim, dim) for _ in range(num_layers)])
        g_in = 2 * dim if combine == 'concat' else dim
        self.gates = torch.nn.ModuleList(
            [torch.nn.Linear(g_in, dim) for _ in range(num_layers)])
        self.reset_parameters()

    def reset_parameters(self):
        torch.nn.init.xavier_normal_(self.preference)
        for module in [self.proj, *self.convs, *self.lins, *self.gates]:
            module.reset_parameters()

    def forward(self, features: Tensor, id_emb: Tensor,
                adj: Propagation) -> Tensor:
        x = F.normalize(torch.cat([self.preference, self.proj(features)]),
                        dim=-1)
        for conv, lin, gate in zip(self.convs, self.lins, self.gates):
            h = F.leaky_relu(conv(x, adj.adj, adj.edge_weight, size=adj.size))
            x_hat = F.leaky_relu(lin(x)) + id_emb
            if self.combine == 'concat':
                x = F.leaky_relu(gate(torch.cat([h, x_hat], dim=-1)))
            else:
                x = F.leaky_relu(gate(h) + x_hat)
        return x


class MMGCN(Recommender):
    r"""MMGCN from the `"MMGCN: Multi-modal Graph Convolution Network for
    Personalized Recommendation of Micro-video"
    <https://arxiv.org/abs/1908.07209>`_ paper (ACM MM 2019): one
    :class:`ModalityGCN` per modality over the user-item graph, each with
    modality-specific user preferences, sharing ID embeddings; a node's
    representation is the mean of its modality representations and the score
    is their inner product, :math:`y_{ui} = \mathbf{r}_u^\top \mathbf{r}_i`
    (the sum of per-modality scores up to a constant factor). Trained with
    BPR plus L2 on the batch's ID embeddings and preferences.

    Args:
        num_users (int): Number of users.
        num_items (int): Number of items.
        train_edge_index (torch.Tensor): ``[2, E]`` training (user, item)
            pairs.
        modality_features (dict): Item features per modality (any number).
        embedding_dim (int): Size of every representation.
            (default: :obj:`64`)
        num_layers (int): Layers per modality. (default: :obj:`2`)
        combine (str): ``"concat"`` or ``"add"`` combination.
            (default: :obj:`"concat"`)
        reg (float): L2 weight. (default: :obj:`1e-4`)
        backend (str, optional): Propagation backend.
    """
    multimodal = True
    choices = {**Recommender.choices, 'combine': COMBINES}

    def __init__(self, num_users: int, num_items: int,
                 train_edge_index: Tensor,
                 modality_features: Dict[str, Tensor],
                 embedding_dim: int = 64, num_layers: int = 2,
                 combine: str = 'concat', reg: float = 1e-4,
                 backend: Optional[str] = None):
        super().__init__(num_users, num_items, train_edge_index, backend)
        if not modality_features:
            raise ValueError("MMGCN needs at least one modality")
        if combine not in COMBINES:
            raise ValueError(f"unknown combine '{combine}', expected one of "
                             f"{COMBINES}")
        self.modalities = list(modality_features)
        self.reg = reg
        for j, x in enumerate(modality_features.values()):
            self.register_buffer(f'feat_{j}', x.float(), persistent=False)
        self.id_emb = torch.nn.Embedding(num_users + num_items, embedding_dim)
        self.branches = torch.nn.ModuleList([
            ModalityGCN(num_users, x.size(1), embedding_dim, num_layers,
                        combine) for x in modality_features.values()
        ])
        self.reset_parameters()

    def reset_parameters(self):
        torch.nn.init.xavier_normal_(self.id_emb.weight)
        for branch in self.branches:
            branch.reset_parameters()

    def get_embedding(self) -> RecEmbedding:
        adj = self.homogeneous_graph('mean')
        reps = [branch(getattr(self, f'feat_{j}'), self.id_emb.weight, adj)
                for j, branch in enumerate(self.branches)]
        return self.split_nodes(torch.stack(reps).mean(0))

    def loss(self, user: Tensor, pos: Tensor, neg: Tensor,
             out: Optional[RecEmbedding] = None) -> Dict[str, Tensor]:
        return self.bpr_terms(self() if out is None else out, user, pos, neg,
                              self.id_emb.weight,
                              *[b.preference[user] for b in self.branches])
