from typing import Dict, NamedTuple, Optional

import torch
import torch.nn.functional as F
from torch import Tensor
from torch_geometric.nn.models import LightGCN as PyGLightGCN

from pyg_mmssl.nn.dropout import dropout
from pyg_mmssl.nn.models.base import RecEmbedding, Recommender


class BM3Embedding(NamedTuple):
    r"""Everything one BM3 forward pass produces."""
    user: Tensor  #: online user embeddings :math:`p(\mathbf{h}_u)`
    item: Tensor  #: online item embeddings :math:`p(\mathbf{h}_i)`
    user_hidden: Tensor  #: propagated user embeddings :math:`\mathbf{h}_u`
    item_hidden: Tensor  #: propagated item embeddings :math:`\mathbf{h}_i`


def _misalignment(online: Tensor, target: Tensor) -> Tensor:
    r""":math:`1 - \cos(\text{online}, \text{target})`, averaged over rows,
    with the gradient stopped at the target."""
    return 1 - F.cosine_similarity(online, target.detach(), dim=-1).mean()


class BM3(Recommender):
    r"""BM3 from the `"Bootstrap Latent Representations for Multi-modal
    Recommendation" <https://arxiv.org/abs/2207.05969>`_ paper (Zhou et al.,
    WWW 2023): self-supervised multimodal recommendation without negative
    samples. ID embeddings are propagated by LightGCN over the training
    graph, each modality's raw features are projected to the same size,
    and a linear predictor :math:`p` maps them all to the online view:

    .. math::
        \mathbf{h}_u = \frac{1}{L+1} \sum_{l=0}^{L} \mathbf{U}^{(l)},
        \quad \mathbf{h}_i = \frac{1}{L+1} \sum_{l=0}^{L} \mathbf{I}^{(l)}
        + \mathbf{E}_i, \quad \mathbf{f}^m_i = \mathbf{X}^m_i \mathbf{W}^m
        + \mathbf{b}^m

    The target view of each is a dropout of it with the gradient stopped,
    :math:`\tilde{\mathbf{z}} = \mathrm{sg}(\mathrm{Drop}_\rho(\mathbf{z}))`.
    For a batch of training pairs :math:`(u, i)`, with
    :math:`\ell(\mathbf{a}, \mathbf{b}) = 1 - \cos(\mathbf{a}, \mathbf{b})`
    (batch means):

    .. math::
        \mathcal{L} = \ell(p(\mathbf{h}_u), \tilde{\mathbf{h}}_i) +
        \ell(p(\mathbf{h}_i), \tilde{\mathbf{h}}_u) + \lambda_{cl} \sum_m
        \big[\ell(p(\mathbf{f}^m_i), \tilde{\mathbf{h}}_i) +
        \ell(p(\mathbf{f}^m_i), \tilde{\mathbf{f}}^m_i)\big] +
        \lambda_{reg} \frac{\|\mathbf{H}_U\|_F + \|\mathbf{H}_I\|_F}{|I|}

    (user-item alignment, modality-to-ID alignment, within-modality
    alignment, and the released code's norm penalty: the Frobenius norms of
    all users' and all items' propagated embeddings, before the predictor,
    divided by the number of items). An item :math:`i` is ranked for user :math:`u` by
    :math:`p(\mathbf{h}_u)^\top p(\mathbf{h}_i)`.

    Args:
        num_users (int): Number of users.
        num_items (int): Number of items.
        train_edge_index (torch.Tensor): ``[2, E]`` training (user, item)
            pairs.
        modality_features (dict): Raw item features per modality,
            ``{name: [I, d_m]}``; any number of modalities.
        embedding_dim (int): Embedding size (the projected features' too).
            (default: :obj:`64`)
        num_layers (int): Propagation layers :math:`L`. (default: :obj:`1`)
        target_dropout (float): Dropout :math:`\rho` that makes the target
            views. (default: :obj:`0.3`)
        cl_weight (float): :math:`\lambda_{cl}`, the weight of the modality
            alignment terms. (default: :obj:`2.0`)
        norm_reg (float): :math:`\lambda_{reg}`, the weight of the norm
            penalty. (default: :obj:`0.1`)
        finetune_features (bool): Train the raw features as parameters, as
            the released code does. (default: :obj:`True`)
        backend (str, optional): Propagation backend (see
            :mod:`pyg_mmssl.nn.adjacency`); fastest for the device if omitted.
    """
    multimodal = True

    def __init__(self, num_users: int, num_items: int,
                 train_edge_index: Tensor,
                 modality_features: Dict[str, Tensor],
                 embedding_dim: int = 64, num_layers: int = 1,
                 target_dropout: float = 0.3, cl_weight: float = 2.0,
                 norm_reg: float = 0.1, finetune_features: bool = True,
                 backend: Optional[str] = None):
        super().__init__(num_users, num_items, train_edge_index, backend)
        if not modality_features:
            raise ValueError("BM3 needs at least one modality")
        if num_layers < 1:
            raise ValueError(f"num_layers must be at least 1, got "
                             f"{num_layers}")
        if not 0 <= target_dropout < 1:
            raise ValueError(f"target_dropout must be in [0, 1), got "
                             f"{target_dropout}")
        self.embedding_dim = embedding_dim
        self.target_dropout = target_dropout
        self.cl_weight = cl_weight
        self.norm_reg = norm_reg

        self.model = PyGLightGCN(num_users + num_items, embedding_dim,
                                 num_layers, normalize=False)
        self.predictor = torch.nn.Linear(embedding_dim, embedding_dim)
        features = self.register_features(modality_features,
                                          finetune_features)
        self.projections = torch.nn.ModuleList([
            torch.nn.Linear(x.size(1), embedding_dim) for x in features])
        self.reset_parameters()

    def reset_parameters(self):
        self.reset_id_embeddings(self.model.embedding.weight)
        for lin in [self.predictor, *self.projections]:
            lin.reset_parameters()
            torch.nn.init.xavier_normal_(lin.weight)

    def forward(self) -> BM3Embedding:
        r"""Propagated and online embeddings of every user and item."""
        adj = self.homogeneous_graph('sym')
        h = self.split_nodes(self.model.get_embedding(adj.adj,
                                                      adj.edge_weight))
        h_u = h.user
        h_i = h.item + self.model.embedding.weight[self.num_users:]
        return BM3Embedding(self.predictor(h_u), self.predictor(h_i), h_u,
                            h_i)

    def get_embedding(self) -> RecEmbedding:
        r"""The online embeddings :math:`p(\mathbf{h})`, which ranking
        scores."""
        out = self.forward()
        return RecEmbedding(out.user, out.item)

    def _target(self, z: Tensor) -> Tensor:
        return dropout(z.detach(), self.target_dropout)

    def loss(self, user: Tensor, pos: Tensor, neg: Tensor,
             out: Optional[BM3Embedding] = None) -> Dict[str, Tensor]:
        r"""Named terms of one batch of training pairs ``(user, pos)``, from
        ``out`` (this step's :meth:`forward` output; computed if omitted):
        ``"align"`` (user-item), ``"modal"`` (modality-to-ID and
        within-modality, summed over modalities) and ``"reg"`` (the norm
        penalty); ``"loss"`` is ``align + cl_weight * modal + norm_reg *
        reg``. BM3 uses no negatives: ``neg`` (which the trainer samples)
        is ignored. Target views are dropouts of the batch's rows, a new
        mask each call."""
        del neg  # no negative sampling in BM3
        if out is None:
            out = self()
        user_target = self._target(out.user_hidden[user])
        item_target = self._target(out.item_hidden[pos])
        align = (_misalignment(out.user[user], item_target) +
                 _misalignment(out.item[pos], user_target))
        modal = out.user.new_zeros(())
        for proj, x in zip(self.projections, self.features()):
            f = proj(x[pos])
            online = self.predictor(f)
            modal = modal + _misalignment(online, item_target) + \
                _misalignment(online, self._target(f))
        reg = (out.user_hidden.norm() + out.item_hidden.norm()) / \
            self.num_items
        return {'loss': align + self.cl_weight * modal + self.norm_reg * reg,
                'align': align, 'modal': modal, 'reg': reg}

    def __repr__(self) -> str:
        return (f'{self.__class__.__name__}({self.num_users} users, '
                f'{self.num_items} items, modalities={self.modalities}, '
                f'dim={self.embedding_dim})')
