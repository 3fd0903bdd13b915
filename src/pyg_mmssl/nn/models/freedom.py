from typing import Dict, List, Optional, Sequence

import torch
from torch import Tensor
from torch_geometric.nn.conv import LGConv
from torch_geometric.nn.models import LightGCN as PyGLightGCN
from torch_geometric.utils import coalesce

from pyg_mmssl.nn.adjacency import (Propagation, build_adjacency,
                                    homogeneous_adjacency)
from pyg_mmssl.nn.conv import bipartite_norm
from pyg_mmssl.nn.knn import knn_item_graph
from pyg_mmssl.nn.losses import bpr_loss
from pyg_mmssl.nn.models.base import (RecEmbedding, Recommender, Schedule,
                                      UserSharding)


def degree_sensitive_sample(edge_index: Tensor, num_users: int,
                            num_items: int, p: float,
                            generator: Optional[torch.Generator] = None
                            ) -> Tensor:
    r"""FREEDOM's degree-sensitive edge pruning: the sorted indices of the
    :math:`\lfloor (1 - p) E \rfloor` (at least one) user-item edges that
    are kept, drawn without replacement with probabilities proportional to
    :math:`1 / \sqrt{d_u d_i}` (successive draws, as
    :func:`torch.multinomial`), so that edges between popular nodes are
    dropped most often.

    Args:
        edge_index (torch.Tensor): ``[2, E]`` (user, item) pairs.
        num_users (int): Number of users.
        num_items (int): Number of items.
        p (float): Share of edges dropped, in :math:`[0, 1)`.
        generator (torch.Generator, optional): Source of randomness (the
            global one of ``edge_index``'s device if omitted).
    """
    if not 0 <= p < 1:
        raise ValueError(f"edge dropout must be in [0, 1), got {p}")
    num_edges = edge_index.size(1)
    weight = bipartite_norm(edge_index, (num_users, num_items))
    keep = max(1, int(num_edges * (1 - p)))
    return torch.multinomial(weight, keep, replacement=False,
                             generator=generator).sort().values


def parse_modality_weights(spec: Optional[str],
                     modalities: Sequence[str]) -> List[float]:
    r"""The weights of the modalities' item graphs, in the order of
    ``modalities``, from ``spec`` written ``"name=weight,name=weight"``
    (every modality once, weights non-negative and not all zero),
    normalised to sum one; equal weights if ``spec`` is :obj:`None`."""
    if spec is None:
        return [1 / len(modalities)] * len(modalities)
    given: Dict[str, float] = {}
    for part in spec.split(','):
        name, sep, value = part.partition('=')
        name = name.strip()
        try:
            weight = float(value)
        except ValueError:
            weight = None
        if not sep or weight is None or not weight >= 0 or name in given:
            raise ValueError(f"modality_weights must read 'name=weight,...' "
                             f"with each modality once and weights >= 0, got "
                             f"'{spec}'")
        if name not in modalities:
            raise ValueError(f"modality_weights names modality '{name}', but "
                             f"the data has {list(modalities)}")
        given[name] = weight
    missing = [m for m in modalities if m not in given]
    if missing:
        raise ValueError(f"modality_weights gives no weight for modality "
                         f"'{missing[0]}' (it must name all of "
                         f"{list(modalities)})")
    total = sum(given.values())
    if total <= 0:
        raise ValueError(f"modality_weights are all zero: '{spec}'")
    return [given[m] / total for m in modalities]


class FREEDOM(Recommender):
    r"""FREEDOM from the `"A Tale of Two Graphs: Freezing and Denoising Graph
    Structures for Multimodal Recommendation"
    <https://arxiv.org/abs/2211.06924>`_ paper (Zhou and Shen, ACM MM 2023):
    LightGCN on a degree-sensitively pruned user-item graph, plus item ID
    embeddings propagated over a frozen item-item graph built once from the
    raw features of every modality:

    .. math::
        \hat{\mathbf{S}} = \sum_m w_m \hat{\mathbf{S}}^m, \quad
        \mathbf{h}_i = \big(\hat{\mathbf{S}}^{L_i} \mathbf{E}_i\big)_i

        \mathbf{e}_u = \frac{1}{L+1} \sum_{l=0}^{L} \mathbf{U}^{(l)},
        \quad \mathbf{e}_i = \frac{1}{L+1} \sum_{l=0}^{L}
        \mathbf{I}^{(l)} + \mathbf{h}_i

    with :math:`\hat{\mathbf{S}}^m` the normalised :math:`k`-nearest
    neighbour graph of modality :math:`m`'s features
    (:func:`~pyg_mmssl.nn.knn_item_graph`) and the LightGCN layers
    :math:`[\mathbf{U}; \mathbf{I}]^{(l+1)} = \hat{\mathbf{A}}
    [\mathbf{U}; \mathbf{I}]^{(l)}` from the ID embeddings
    :math:`[\mathbf{E}_u; \mathbf{E}_i]`. In training,
    :math:`\hat{\mathbf{A}}` is the symmetrically normalised subgraph of a
    share :math:`1 - \rho` of the training edges, drawn with probabilities
    proportional to :math:`1 / \sqrt{d_u d_i}`
    (:func:`degree_sensitive_sample`) and redrawn every
    :obj:`resample_every` steps (:meth:`refresh_graphs`); for ranking it is
    the whole training graph. The loss adds to BPR the BPR of the projected
    features :math:`\mathbf{X}^m \mathbf{W}^m` as the item
    representations:

    .. math::
        \mathcal{L} = \mathcal{L}_{BPR}(\mathbf{e}_u, \mathbf{e}_i) +
        \lambda \sum_m \mathcal{L}_{BPR}(\mathbf{e}_u, \mathbf{X}^m_i
        \mathbf{W}^m)

    (the released code has no L2 term; :math:`\lambda` is its
    ``reg_weight``).

    Args:
        num_users (int): Number of users.
        num_items (int): Number of items.
        train_edge_index (torch.Tensor): ``[2, E]`` training (user, item)
            pairs.
        modality_features (dict): Raw item features per modality,
            ``{name: [I, d_m]}``; any number of modalities.
        embedding_dim (int): Embedding size (the projected features' too).
            (default: :obj:`64`)
        num_layers (int): Propagation layers :math:`L` on the user-item
            graph. (default: :obj:`2`)
        item_layers (int): Propagations :math:`L_i` over the item-item
            graph. (default: :obj:`1`)
        knn_k (int): Neighbours per item in each modality's item graph.
            (default: :obj:`10`)
        modality_weights (str, optional): Weights :math:`w_m` of the
            modalities' item graphs as ``"name=weight,..."``, naming every
            modality (normalised to sum one; the released code weighs image
            0.1 and text 0.9); equal weights if omitted.
            (default: :obj:`None`)
        edge_dropout (float): Share :math:`\rho` of training edges dropped
            in each drawn subgraph; 0 trains on the whole graph.
            (default: :obj:`0.8`)
        resample_every (int): Training steps between draws of the pruned
            subgraph (the released code draws once per epoch: every
            ``ceil(E / batch_size)`` steps). (default: :obj:`1`)
        feat_weight (float): :math:`\lambda`, the weight of the projected
            features' BPR terms. (default: :obj:`1e-4`)
        finetune_features (bool): Train the raw features as parameters, as
            the released code does (the item graphs stay those of the
            initial features). (default: :obj:`True`)
        knn_chunk_size (int): Items per chunk when the item graphs are
            built. (default: :obj:`1024`)
        backend (str, optional): Propagation backend (see
            :mod:`pyg_mmssl.nn.adjacency`); fastest for the device if omitted.
    """
    multimodal = True

    def __init__(self, num_users: int, num_items: int,
                 train_edge_index: Tensor,
                 modality_features: Dict[str, Tensor],
                 embedding_dim: int = 64, num_layers: int = 2,
                 item_layers: int = 1, knn_k: int = 10,
                 modality_weights: Optional[str] = None,
                 edge_dropout: float = 0.8, resample_every: int = 1,
                 feat_weight: float = 1e-4, finetune_features: bool = True,
                 knn_chunk_size: int = 1024, backend: Optional[str] = None):
        super().__init__(num_users, num_items, train_edge_index, backend)
        if not modality_features:
            raise ValueError("FREEDOM needs at least one modality")
        for name, value, low in (('num_layers', num_layers, 1),
                                 ('item_layers', item_layers, 0),
                                 ('knn_k', knn_k, 1),
                                 ('resample_every', resample_every, 1),
                                 ('knn_chunk_size', knn_chunk_size, 1)):
            if value < low:
                raise ValueError(f"{name} must be at least {low}, got "
                                 f"{value}")
        if not 0 <= edge_dropout < 1:
            raise ValueError(f"edge_dropout must be in [0, 1), got "
                             f"{edge_dropout}")
        weights = parse_modality_weights(modality_weights,
                                         list(modality_features))
        self.embedding_dim = embedding_dim
        self.item_layers = item_layers
        self.knn_k = knn_k
        self.edge_dropout = edge_dropout
        self.resample_every = resample_every
        self.feat_weight = feat_weight

        self.model = PyGLightGCN(num_users + num_items, embedding_dim,
                                 num_layers, normalize=False)
        self.item_conv = LGConv(normalize=False)
        # No bias: it cancels in the BPR difference of the projected
        # features, their only use (the released code's never trains).
        self.projections = torch.nn.ModuleList([
            torch.nn.Linear(x.size(1), embedding_dim, bias=False)
            for x in modality_features.values()
        ])
        edges, values = [], []
        for j, x in enumerate(self.register_features(modality_features,
                                                     finetune_features)):
            edge_index, weight = knn_item_graph(x, knn_k, knn_chunk_size)
            edges.append(edge_index)
            values.append(weights[j] * weight)
        # One graph: the weighted sum of the modalities' (shared edges add).
        edge_index, weight = coalesce(torch.cat(edges, 1), torch.cat(values),
                                      num_items, reduce='sum')
        self.register_buffer('item_edge_index', edge_index, persistent=False)
        self.register_buffer('item_edge_weight', weight, persistent=False)
        self.reset_parameters()
        if edge_dropout > 0:
            # Persistent: a resumed run continues with the same subgraph.
            self.register_buffer('kept_edges', self.sample_edges())

    def reset_parameters(self):
        self.reset_id_embeddings(self.model.embedding.weight)
        for proj in self.projections:
            proj.reset_parameters()

    def schedule(self) -> Schedule:
        r"""A new pruned subgraph every :obj:`resample_every` steps (none
        without :obj:`edge_dropout`)."""
        if self.edge_dropout == 0:
            return Schedule()
        return Schedule(refresh_every=self.resample_every)

    # Graphs ################################################################

    def sample_edges(self) -> Tensor:
        r"""Indices (into the training edges) of a new pruned subgraph."""
        return degree_sensitive_sample(self.train_edge_index, self.num_users,
                                       self.num_items, self.edge_dropout)

    def item_graph(self) -> Propagation:
        r"""The frozen item-item graph :math:`\hat{\mathbf{S}}`."""
        return self.cached_graph('items', lambda: build_adjacency(
            self.item_edge_index, (self.num_items, self.num_items),
            self.item_edge_weight.to(self.graph_dtype),
            self.propagation_backend()))

    def pruned_graph(self) -> Propagation:
        r"""The normalised :math:`(U + I) \times (U + I)` adjacency of the
        current pruned subgraph (the training graph's without
        :obj:`edge_dropout`)."""
        if self.edge_dropout == 0:
            return self.homogeneous_graph('sym')
        return self.cached_graph('pruned', lambda: homogeneous_adjacency(
            self.train_edge_index[:, self.kept_edges], self.num_users,
            self.num_items, 'sym', self.propagation_backend(),
            self.graph_dtype))

    @torch.no_grad()
    def refresh_graphs(self, out: RecEmbedding,
                       sharding: Optional[UserSharding] = None):
        r"""Draws a new pruned subgraph (``out`` is not needed). With a
        ``sharding``, every process takes rank 0's draw."""
        kept = self.sample_edges()
        if sharding is not None:
            kept = sharding.sync(kept)
        self.kept_edges = kept
        self.clear_graph_cache('pruned')

    def _load_from_state_dict(self, *args, **kwargs):
        # The loaded subgraph replaces the cached one.
        self.clear_graph_cache('pruned')
        super()._load_from_state_dict(*args, **kwargs)

    # Forward and loss ######################################################

    def get_embedding(self) -> RecEmbedding:
        r"""User and item embeddings over the pruned subgraph in training,
        over the whole training graph otherwise."""
        adj = self.pruned_graph() if self.training else \
            self.homogeneous_graph('sym')
        out = self.split_nodes(self.model.get_embedding(adj.adj,
                                                        adj.edge_weight))
        h = self.model.embedding.weight[self.num_users:]
        items = self.item_graph()
        for _ in range(self.item_layers):
            h = self.item_conv(h, items.adj, items.edge_weight)
        return RecEmbedding(out.user, out.item + h)

    def loss(self, user: Tensor, pos: Tensor, neg: Tensor,
             out: Optional[RecEmbedding] = None) -> Dict[str, Tensor]:
        r"""``"bpr"`` on the embeddings and ``"feat_bpr"``, the sum over
        modalities of BPR with the projected features of ``pos`` and
        ``neg`` as the items; ``"loss"`` is ``bpr + feat_weight *
        feat_bpr``."""
        if out is None:
            out = self()
        u = out.user[user]
        bpr = bpr_loss(u, out.item[pos], out.item[neg])
        feat = sum(bpr_loss(u, proj(x[pos]), proj(x[neg])) for proj, x in
                   zip(self.projections, self.features()))
        return {'loss': bpr + self.feat_weight * feat, 'bpr': bpr,
                'feat_bpr': feat}

    def __repr__(self) -> str:
        return (f'{self.__class__.__name__}({self.num_users} users, '
                f'{self.num_items} items, modalities={self.modalities}, '
                f'dim={self.embedding_dim}, k={self.knn_k})')
