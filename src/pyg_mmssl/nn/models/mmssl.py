from functools import cached_property
from typing import Dict, List, Optional, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.profiler import record_function
from torch_geometric.data import HeteroData
from torch_geometric.utils import softmax

from pyg_mmssl.nn.adjacency import BipartiteGraph, Propagation
from pyg_mmssl.nn.attention import ModalityAttention
from pyg_mmssl.nn.conv import MMSSLConv, bipartite_norm
from pyg_mmssl.nn.discriminator import CRITICS, Discriminator
from pyg_mmssl.nn.dropout import Dropout
from pyg_mmssl.nn.losses import (bpr_loss, gumbel_noise,
                                 gumbel_softmax_is_sparse, info_nce, l2_reg)
from pyg_mmssl.nn.models.base import (ITEM_BIASES, RecEmbedding,
                                      Recommender, Schedule, UserSharding)
from pyg_mmssl.nn.rows import CriticRows, RowSource, masked_score_rows
from pyg_mmssl.nn.structure import num_learned_edges, topk_graph
from pyg_mmssl.ranking import csr_rows


LEARNED_GRAPHS = ('replace', 'union', 'mix')
LEARNED_WEIGHTS = ('binary', 'score')
FUSION_SCALES = ('unit', 'embedding')


def _rows(x: Tensor, index: Optional[Tensor]) -> Tensor:
    return x if index is None else x[index]


class MMSSLEmbedding:
    r"""Everything one MMSSL forward pass produces. The full-graph parts
    (the collaborative layers and the ID-modality views) are computed by
    :meth:`MMSSL.forward`; the final embeddings and the modality embeddings
    are computed on demand, for the rows a caller reads (:meth:`user_at`,
    :meth:`item_at`, :meth:`modal_at`), so that a training step's loss
    touches only its batch's rows. The full matrices are computed once,
    when first read, as the attributes below."""
    def __init__(self, model: 'MMSSL', user_sum: Tensor, item_sum: Tensor,
                 user_id_modal: Dict[str, Tensor],
                 item_id_modal: Dict[str, Tensor],
                 attention: Optional[Tensor],
                 modal: Optional[Dict[str, Dict[str, Tensor]]] = None):
        self._model = model
        self._sum = {'user': user_sum, 'item': item_sum}
        self._modal = modal
        self.user_id_modal = user_id_modal  #: :math:`\mathbf{H}_u^m`
        self.item_id_modal = item_id_modal  #: :math:`\mathbf{H}_i^m`
        self.attention = attention  #: user attention weights ``[U, H, M, M]``

    def modal_at(self, modality: str, side: str,
                 index: Optional[Tensor] = None) -> Tensor:
        r"""Rows ``index`` (all if :obj:`None`) of modality embeddings
        :math:`\mathbf{P}_u^m` (``side="user"``) or :math:`\mathbf{P}_i^m`
        (``side="item"``)."""
        full = self._modal[side] if self._modal is not None else \
            self.__dict__.get(f'{side}_modal')  # all rows already computed
        if full is not None:
            return _rows(full[modality], index)
        return self._model.propagated_modality(modality, side, index)

    def at(self, side: str, index: Optional[Tensor] = None
           ) -> Tuple[Tensor, Dict[str, Tensor]]:
        r"""Rows ``index`` (all if :obj:`None`) of the final embeddings of
        ``side`` (``"user"``: :math:`\mathbf{e}_u`, ``"item"``:
        :math:`\mathbf{e}_i`) and of the modality embeddings they fuse,
        ``{modality: rows}``."""
        model = self._model
        modal = {m: self.modal_at(m, side, index) for m in model.modalities}
        if side in self.__dict__:  # all rows already computed
            return _rows(self.__dict__[side], index), modal
        cf = _rows(self._sum[side], index) / (model.num_layers + 1)
        out = cf
        for m in model.modalities:
            out = out + model.lambda_f * model._fused(modal[m], cf)
        return out, modal

    def user_at(self, index: Optional[Tensor] = None) -> Tensor:
        r"""Rows ``index`` (all if :obj:`None`) of the final user
        embeddings :math:`\mathbf{e}_u`."""
        return self.at('user', index)[0]

    def item_at(self, index: Optional[Tensor] = None) -> Tensor:
        r"""Rows ``index`` (all if :obj:`None`) of the final item
        embeddings :math:`\mathbf{e}_i`."""
        return self.at('item', index)[0]

    @cached_property
    def user(self) -> Tensor:
        r"""Final user embeddings :math:`\mathbf{e}_u`."""
        return self.user_at()

    @cached_property
    def item(self) -> Tensor:
        r"""Final item embeddings :math:`\mathbf{e}_i`."""
        return self.item_at()

    @cached_property
    def user_modal(self) -> Dict[str, Tensor]:
        r""":math:`\mathbf{P}_u^m` of every modality."""
        return {m: self.modal_at(m, 'user') for m in self._model.modalities}

    @cached_property
    def item_modal(self) -> Dict[str, Tensor]:
        r""":math:`\mathbf{P}_i^m` of every modality."""
        return {m: self.modal_at(m, 'item') for m in self._model.modalities}


class MMSSL(Recommender):
    r"""MMSSL from the `"Multi-Modal Self-Supervised Learning for
    Recommendation" <https://arxiv.org/abs/2302.10632>`_ paper (WWW 2023),
    built from PyG message passing (:class:`MMSSLConv`) over the observed
    user-item graph :math:`\hat{\mathbf{A}}` and one learned graph
    :math:`\hat{\mathbf{G}}^m` per modality:

    .. math::
        \mathbf{P}_u^m = \hat{\mathbf{A}} \, \mathrm{Drop}(\mathbf{X}^m
        \mathbf{W}^m + \mathbf{b}^m), \quad
        \mathbf{P}_i^m = \hat{\mathbf{A}}^\top \mathbf{P}_u^m

        \mathbf{H}_u^m = \hat{\mathbf{G}}^m \mathbf{E}_i, \quad
        \mathbf{Z}_u = \mathrm{mean}_m \, \mathrm{MHA}(\mathbf{H}_u^{1..|M|}),
        \quad \mathbf{U}^{(0)} = \mathbf{E}_u + \lambda_{id}
        \, \bar{\mathbf{Z}}_u

        \mathbf{e}_u = \frac{1}{L+1} \sum_{l=0}^{L} \mathbf{U}^{(l)} +
        \lambda_f \sum_m \bar{\mathbf{P}}_u^m

    (items symmetric; :math:`\bar{\cdot}` is row-wise L2 normalisation).
    Training adds to BPR a cross-modal InfoNCE between
    :math:`\mathbf{H}_u^m` and :math:`\mathbf{e}_u`, and adversarial structure
    learning: a WGAN-GP :class:`Discriminator` tells the Gumbel-softmax
    transformed observed rows (mixed with collaborative scores) from each
    modality's generated rows
    :math:`\bar{\mathbf{s}}^m_u = \overline{\mathrm{mask}_u \odot
    \mathbf{p}_u^m \mathbf{P}_i^{m\top}}`; every :obj:`refresh_every` steps
    :math:`\hat{\mathbf{G}}^m` becomes the top-:math:`k` items of those scores
    for every user (see :func:`topk_graph`).

    Args:
        num_users (int): Number of users.
        num_items (int): Number of items.
        train_edge_index (torch.Tensor): ``[2, E]`` training (user, item)
            pairs.
        modality_features (dict): Frozen item features per modality,
            ``{name: [I, d_m]}``; any number of modalities.
        embedding_dim (int): :math:`d`. (default: :obj:`64`)
        num_layers (int): Collaborative propagation layers :math:`L`.
            (default: :obj:`2`)
        modality_layers (int): Modality propagation layers (each one user
            and one item hop). (default: :obj:`1`)
        dropout (float): Encoder dropout. (default: :obj:`0.2`)
        lambda_id (float): :math:`\lambda_{id}`. (default: :obj:`0.36`)
        lambda_f (float): :math:`\lambda_f`. (default: :obj:`0.55`)
        heads (int): Attention heads. (default: :obj:`4`)
        reg (float): L2 weight on the batch's ID embeddings.
            (default: :obj:`1e-5`)
        feat_reg (float): L2 weight on the batch's modality embeddings.
            (default: :obj:`1e-5`)
        cl_rate (float): Contrastive weight. (default: :obj:`0.03`)
        tau (float): Contrastive temperature. (default: :obj:`0.5`)
        g_rate (float): Generator (adversarial) weight. At :obj:`0` the
            critic would shape nothing, so it is neither built nor trained;
            the learned graphs are still refreshed from the modality scores.
            (default: :obj:`1e-4`)
        gp_weight (float): Gradient penalty weight. (default: :obj:`0.3`)
        real_mix (float): Weight of the collaborative scores mixed into the
            real distribution. (default: :obj:`100.0`)
        tau_real (float): Gumbel-softmax temperature of the real
            distribution. (default: :obj:`0.005`)
        gumbel_eps (float): Scale of the Gumbel noise. (default: :obj:`1e-5`)
        refresh_every (int): :math:`T`, steps between graph refreshes.
            (default: :obj:`1`)
        topk_rate (float): Learned edges per user,
            :math:`k = \max(1, \mathrm{round}(\text{rate} \cdot I))`.
            (default: :obj:`1e-4`)
        critic (str): ``"dense"``, ``"exact"`` (the same critic, computed
            on factorised rows) or ``"lowrank"`` (a rank-:obj:`critic_rank`
            first layer); see :class:`Discriminator`. The default is the
            fastest to a given validation Recall@20 on TikTok
            (``benchmarks/RESULTS.md``).
            (default: :obj:`"lowrank"`)
        critic_rank (int): Rank of the ``"lowrank"`` critic.
            (default: :obj:`64`)
        adversarial (bool): Ablation switch: without it there is no critic
            and :math:`\hat{\mathbf{G}}^m` stays the observed graph, the
            same for every modality: :math:`\mathbf{H}_u^m = \hat{\mathbf{A}}
            \mathbf{E}_i` is computed once, the attention sees :math:`|M|`
            identical rows (uniform weights; see
            :meth:`ModalityAttention.forward_identical`) and the contrastive
            term is :math:`|M|` times one InfoNCE. (default: :obj:`True`)
        contrastive (bool): Ablation switch for the InfoNCE term.
            (default: :obj:`True`)
        gumbel (bool): Ablation switch: without it the real distribution is
            the row-normalised observed row. (default: :obj:`True`)
        attention (bool): Ablation switch: without it
            :math:`\mathbf{Z} = \mathrm{mean}_m \mathbf{H}^m`.
            (default: :obj:`True`)
        attention_bias (bool): Whether the attention's projections have
            biases (the method's have). Without structure learning the
            attention is the affine map :math:`\mathbf{Z} = (\mathbf{h}
            \mathbf{W}^V + \mathbf{b}^V) \mathbf{W}^O + \mathbf{b}^O` of
            :math:`\mathbf{h} = \hat{\mathbf{A}} \mathbf{E}_i`, whose bias
            is a direction shared by every node (largest in
            :math:`\bar{\mathbf{Z}}` where :math:`\mathbf{h}` is small);
            without biases it is linear. (default: :obj:`True`)
        item_bias (str): A learned per-item score bias from
            :meth:`~pyg_mmssl.nn.models.base.Recommender.init_item_bias`:
            :obj:`"none"`, :obj:`"zero"` or :obj:`"popularity"` (starting
            at the log training counts). (default: :obj:`"none"`)
        item_bias_scale (float): The popularity prior's factor.
            (default: :obj:`1.0`)
        learned_graph (str): How a modality's learned edges
            :math:`\mathbf{L}^m` (top-:math:`k` per user) form the graph
            :math:`\hat{\mathbf{G}}^m` of its ID-modality branch:
            ``"replace"``: :math:`\hat{\mathbf{G}}^m = \mathrm{norm}(
            \mathbf{L}^m)` (the method); ``"union"``: the observed edges plus
            the learned ones, :math:`\mathrm{norm}(\mathbf{R} +
            \mathbf{L}^m)`; ``"mix"``: :math:`\beta \hat{\mathbf{A}} + (1 -
            \beta) \, \mathrm{norm}(\mathbf{L}^m)`, as LATTICE mixes its
            learned item graph into the original. ``norm`` is the symmetric
            normalisation; before the first refresh every form is the
            observed graph. (default: :obj:`"replace"`)
        graph_beta (float): :math:`\beta` of ``"mix"``.
            (default: :obj:`0.9`)
        learned_weight (str): ``"binary"``: learned edges weigh one (the
            method); ``"score"``: a user's :math:`k` learned edges weigh
            :math:`k \, \mathrm{softmax}_i(\mathbf{p}_u^{m\top}
            \mathbf{p}_i^m)` over them (mean one), before normalisation.
            (default: :obj:`"binary"`)
        fusion_scale (str): Scale of the unit-norm modality parts added to
            the embeddings (:math:`\lambda_{id} \bar{\mathbf{Z}}_u`,
            :math:`\lambda_f \bar{\mathbf{P}}_u^m`): ``"unit"`` (the
            method) or ``"embedding"``: times the row norm of the embedding
            they are added to (:math:`\mathbf{E}_u`, the collaborative
            mean), so that :math:`\lambda` is relative to it.
            (default: :obj:`"unit"`)
        backend (str, optional): Propagation backend (see
            :mod:`pyg_mmssl.nn.adjacency`); fastest for the device if omitted.
        chunk_size (int): Users per chunk of the top-:math:`k` refresh.
            (default: :obj:`1024`)
    """
    multimodal = True
    choices = {**Recommender.choices, 'critic': CRITICS,
               'item_bias': ITEM_BIASES,
               'learned_graph': LEARNED_GRAPHS,
               'learned_weight': LEARNED_WEIGHTS,
               'fusion_scale': FUSION_SCALES}

    def __init__(
        self,
        num_users: int,
        num_items: int,
        train_edge_index: Tensor,
        modality_features: Dict[str, Tensor],
        embedding_dim: int = 64,
        num_layers: int = 2,
        modality_layers: int = 1,
        dropout: float = 0.2,
        lambda_id: float = 0.36,
        lambda_f: float = 0.55,
        heads: int = 4,
        reg: float = 1e-5,
        feat_reg: float = 1e-5,
        cl_rate: float = 0.03,
        tau: float = 0.5,
        g_rate: float = 1e-4,
        gp_weight: float = 0.3,
        real_mix: float = 100.0,
        tau_real: float = 0.005,
        gumbel_eps: float = 1e-5,
        refresh_every: int = 1,
        topk_rate: float = 1e-4,
        critic: str = 'lowrank',
        critic_rank: int = 64,
        adversarial: bool = True,
        contrastive: bool = True,
        gumbel: bool = True,
        attention: bool = True,
        attention_bias: bool = True,
        item_bias: str = 'none',
        item_bias_scale: float = 1.0,
        learned_graph: str = 'replace',
        graph_beta: float = 0.9,
        learned_weight: str = 'binary',
        fusion_scale: str = 'unit',
        backend: Optional[str] = None,
        chunk_size: int = 1024,
    ):
        super().__init__(num_users, num_items, train_edge_index, backend)
        for name, value in (('learned_graph', learned_graph),
                            ('learned_weight', learned_weight),
                            ('fusion_scale', fusion_scale)):
            if value not in self.choices[name]:
                raise ValueError(f"unknown {name} '{value}', expected one of "
                                 f"{self.choices[name]}")
        if not 0 <= graph_beta <= 1:
            raise ValueError(f"graph_beta must be in [0, 1], got "
                             f"{graph_beta}")
        if not modality_features:
            raise ValueError("MMSSL needs at least one modality")
        if refresh_every <= 0:
            raise ValueError(f"refresh_every must be positive, got "
                             f"{refresh_every}")
        self.modalities: List[str] = list(modality_features)
        self.embedding_dim = embedding_dim
        self.num_layers = num_layers
        self.modality_layers = modality_layers
        self.lambda_id, self.lambda_f = lambda_id, lambda_f
        self.reg, self.feat_reg = reg, feat_reg
        self.cl_rate, self.tau = cl_rate, tau
        self.g_rate, self.gp_weight = g_rate, gp_weight
        self.real_mix, self.tau_real = real_mix, tau_real
        self.gumbel_eps = gumbel_eps
        self.refresh_every = refresh_every
        self.k = num_learned_edges(num_items, topk_rate)
        self.adversarial, self.contrastive = adversarial, contrastive
        self.gumbel = gumbel
        self.learned_graph_mode = learned_graph
        self.graph_beta = graph_beta
        self.learned_weight = learned_weight
        self.fusion_scale = fusion_scale
        self.chunk_size = chunk_size

        for j, x in enumerate(modality_features.values()):
            if x.dim() != 2 or x.size(0) != num_items:
                raise ValueError(f"features of modality '{self.modalities[j]}'"
                                 f" must be [{num_items}, d], got "
                                 f"{tuple(x.shape)}")
            self.register_buffer(f'feat_{j}', x.float(), persistent=False)
            # Before the first refresh every form is the observed graph.
            first = train_edge_index.clone() if learned_graph == 'replace' \
                else train_edge_index.new_empty((2, 0))
            self.register_buffer(f'learned_{j}', first)
            if learned_weight == 'score':
                self.register_buffer(f'learned_weight_{j}',
                                     torch.ones(first.size(1)))

        self.encoders = torch.nn.ModuleList([
            torch.nn.Linear(x.size(1), embedding_dim)
            for x in modality_features.values()
        ])
        self.dropout = Dropout(dropout)
        self.user_emb = torch.nn.Embedding(num_users, embedding_dim)
        self.item_emb = torch.nn.Embedding(num_items, embedding_dim)
        self.attention = ModalityAttention(embedding_dim, heads,
                                           attention_bias) \
            if attention else None
        self.conv = MMSSLConv(normalize='none')
        self.init_item_bias(item_bias, item_bias_scale)
        self.discriminator = Discriminator(num_items, critic, critic_rank) \
            if adversarial and g_rate > 0 else None
        self.reset_parameters()

    def reset_parameters(self):
        for enc in self.encoders:
            enc.reset_parameters()
        torch.nn.init.xavier_uniform_(self.user_emb.weight)
        torch.nn.init.xavier_uniform_(self.item_emb.weight)
        self.reset_item_bias()
        if self.attention is not None:
            self.attention.reset_parameters()
        if self.discriminator is not None:
            self.discriminator.reset_parameters()

    def discriminator_parameters(self) -> List[torch.nn.Parameter]:
        if self.discriminator is None:
            return []
        return list(self.discriminator.parameters())

    def schedule(self) -> Schedule:
        r"""One critic update per step (with a critic: :obj:`g_rate` above
        0) and a graph refresh every :obj:`refresh_every` steps, with
        structure learning; neither without it."""
        if not self.adversarial:
            return Schedule()
        return Schedule(critic_steps=int(self.discriminator is not None),
                        refresh_every=self.refresh_every)

    # Graphs ################################################################

    def learned_edge_index(self, modality: str) -> Tensor:
        r"""``[2, E]`` (user, item) edges of a modality's learned graph."""
        return getattr(self, f'learned_{self.modalities.index(modality)}')

    def modality_graph(self, j: int) -> BipartiteGraph:
        r"""The normalised graph :math:`\hat{\mathbf{G}}^m` of modality
        ``j``'s ID-modality branch (see :obj:`learned_graph`)."""
        return self.cached_graph(f'learned_{j}', lambda: self._build_learned(j))

    def _build_learned(self, j: int) -> BipartiteGraph:
        learned = getattr(self, f'learned_{j}')
        weight = getattr(self, f'learned_weight_{j}', None)
        if weight is not None:
            weight = weight.to(self.graph_dtype)
        mode, size = self.learned_graph_mode, (self.num_users, self.num_items)
        options = dict(backend=self.propagation_backend(),
                       dtype=self.graph_dtype)
        if mode == 'replace':
            return BipartiteGraph.build(learned, *size, weight, **options)
        if learned.size(1) == 0:  # not refreshed yet
            return self.bipartite_graph()
        train = self.train_edge_index
        edges = torch.cat([train, learned], dim=1)  # disjoint edge sets
        if mode == 'union':
            if weight is not None:
                weight = torch.cat([weight.new_ones(train.size(1)), weight])
            return BipartiteGraph.build(edges, *size, weight, **options)
        observed = bipartite_norm(train, size, dtype=self.graph_dtype)
        own = bipartite_norm(learned, size, weight, dtype=self.graph_dtype)
        weight = torch.cat([self.graph_beta * observed,
                            (1 - self.graph_beta) * own])
        return BipartiteGraph.build(edges, *size, weight, normalize='none',
                                    **options)

    def write_learned_graphs(self, data: HeteroData, user: str = 'user',
                             item: str = 'item') -> HeteroData:
        r"""Stores each modality's learned graph in ``data`` as edge type
        ``(user, modality, item)`` plus its reverse."""
        for m in self.modalities:
            ei = self.learned_edge_index(m).detach().cpu()
            data[user, m, item].edge_index = ei
            data[item, f'rev_{m}', user].edge_index = ei.flip(0)
        return data

    @torch.no_grad()
    def refresh_graphs(self, out: MMSSLEmbedding,
                       sharding: Optional[UserSharding] = None):
        r"""Replaces every learned graph by the top-:math:`k` items of
        :math:`\mathbf{p}_u^{m\top} \mathbf{p}_i^m` for every user,
        training items excluded, from the modality embeddings of ``out``
        (a :meth:`forward` output). With a ``sharding`` (several processes),
        each process ranks its share of the users by the synchronised
        scores and the shares are gathered, so all hold the same graphs."""
        for j, m in enumerate(self.modalities):
            p_u, p_i = out.user_modal[m].detach(), out.item_modal[m].detach()
            users = None  # every user
            if sharding is not None:
                p_u, p_i = sharding.sync(p_u), sharding.sync(p_i)
                users = torch.arange(self.num_users, device=p_u.device)[
                    sharding.users(self.num_users)]
            weighted = self.learned_weight == 'score'
            edges = topk_graph(p_u, p_i, self.k, self.train_csr(),
                               self.chunk_size, users, scores=weighted)
            if weighted:
                edges, scores = edges
            if sharding is not None:
                edges = sharding.gather(edges.t().contiguous()).t()
                if weighted:
                    scores = sharding.gather(scores)
            setattr(self, f'learned_{j}', edges.contiguous())
            if weighted:
                # k softmax(scores) over each user's edges: mean one.
                count = torch.bincount(edges[0], minlength=self.num_users)
                weight = softmax(scores, edges[0], num_nodes=self.num_users)
                setattr(self, f'learned_weight_{j}',
                        weight * count[edges[0]].to(weight.dtype))
            self.clear_graph_cache(f'learned_{j}')

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        # Learned graphs change size with every refresh: adopt the stored
        # ones as they are before the regular (same-shape) copy.
        for j in range(len(self.modalities)):
            for name in (f'learned_{j}', f'learned_weight_{j}'):
                if prefix + name in state_dict and hasattr(self, name):
                    setattr(self, name, state_dict[prefix + name].to(
                        self.train_edge_index.device).clone())
            self.clear_graph_cache(f'learned_{j}')
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    # Forward ###############################################################

    def _propagate(self, x: Tensor, p: Propagation) -> Tensor:
        # propagate_type: (x: PairTensor, edge_weight: OptTensor)
        return self.conv((x, None), p.adj, p.edge_weight, size=p.size)

    def _fuse(self, h: Tensor):
        if self.attention is None:
            return h.mean(dim=1), None
        return self.attention(h)

    def _fuse_identical(self, h: Tensor):
        if self.attention is None:
            return h, None
        return self.attention.forward_identical(h, len(self.modalities))

    def _fused(self, x: Tensor, base: Tensor) -> Tensor:
        r""":math:`\bar{\mathbf{x}}` (row-wise unit norm), times the row
        norm of ``base`` with ``fusion_scale="embedding"``."""
        x = F.normalize(x, dim=-1)
        if self.fusion_scale == 'embedding':
            x = x * base.norm(dim=-1, keepdim=True)
        return x

    def _modality_hops(self, p_i: Tensor):
        r"""``(P_u, P_i)``: item rows ``p_i`` through :obj:`modality_layers`
        user and item hops of the observed graph."""
        graph = self.bipartite_graph()
        for _ in range(self.modality_layers):
            p_u = self._propagate(p_i, graph.item_to_user)
            p_i = self._propagate(p_u, graph.user_to_item)
        return p_u, p_i

    def _propagated_features(self, j: int) -> Dict[str, tuple]:
        r"""Modality ``j``'s features and a column of ones propagated
        through the observed graph, ``{side: (features, ones)}``: what
        :meth:`propagated_modality` multiplies by the encoder."""
        x = getattr(self, f'feat_{j}').to(self.graph_dtype)
        with torch.no_grad():
            x_u, x_i = self._modality_hops(
                torch.cat([x, x.new_ones(x.size(0), 1)], dim=1))
        return {'user': (x_u[:, :-1], x_u[:, -1:]),
                'item': (x_i[:, :-1], x_i[:, -1:])}

    def propagated_modality(self, modality: str, side: str,
                            index: Optional[Tensor] = None) -> Tensor:
        r"""Rows ``index`` (all if :obj:`None`) of :math:`\mathbf{P}_u^m`
        (``side="user"``) or :math:`\mathbf{P}_i^m` (``"item"``) without
        dropout. Propagation is linear, so it commutes with the encoder:
        :math:`\hat{\mathbf{A}} (\mathbf{X}^m \mathbf{W}^m + \mathbf{1}
        \mathbf{b}^{m\top}) = (\hat{\mathbf{A}} \mathbf{X}^m) \mathbf{W}^m
        + (\hat{\mathbf{A}} \mathbf{1}) \mathbf{b}^{m\top}`, with
        :math:`\hat{\mathbf{A}} \mathbf{X}^m` propagated once and cached
        (as the graphs are): a row costs one product with
        :math:`\mathbf{W}^m`, and no step propagates features."""
        j = self.modalities.index(modality)
        x, ones = self.cached_graph(
            f'modality_{j}', lambda: self._propagated_features(j))[side]
        enc = self.encoders[j]
        return F.linear(_rows(x, index), enc.weight) + \
            _rows(ones, index) * enc.bias

    def forward(self) -> MMSSLEmbedding:
        r"""One forward pass over the bound graphs: the collaborative layers
        and the ID-modality views; the rest on demand (see
        :class:`MMSSLEmbedding`). With dropout active (training with
        :obj:`dropout` above 0), the modality embeddings are computed here,
        from one dropout draw; otherwise from
        :meth:`propagated_modality`."""
        graph = self.bipartite_graph()
        modal = None
        if self.training and self.dropout.p > 0:
            modal = {'user': {}, 'item': {}}
            for j, m in enumerate(self.modalities):
                modal['user'][m], modal['item'][m] = self._modality_hops(
                    self.dropout(self.encoders[j](getattr(self, f'feat_{j}'))))

        e_u, e_i = self.user_emb.weight, self.item_emb.weight
        if self.adversarial:
            user_id_modal, item_id_modal = {}, {}
            for j, m in enumerate(self.modalities):
                learned = self.modality_graph(j)
                user_id_modal[m] = self._propagate(e_i, learned.item_to_user)
                item_id_modal[m] = self._propagate(e_u, learned.user_to_item)
            z_u, att = self._fuse(torch.stack(list(user_id_modal.values()),
                                              1))
            z_i, _ = self._fuse(torch.stack(list(item_id_modal.values()), 1))
        else:
            # Every modality's graph is the observed one: one propagation
            # serves them all (the same tensor under each name), and their
            # fusion is that of identical inputs.
            h_u = self._propagate(e_i, graph.item_to_user)
            h_i = self._propagate(e_u, graph.user_to_item)
            user_id_modal = dict.fromkeys(self.modalities, h_u)
            item_id_modal = dict.fromkeys(self.modalities, h_i)
            z_u, att = self._fuse_identical(h_u)
            z_i, _ = self._fuse_identical(h_i)

        u = e_u + self.lambda_id * self._fused(z_u, e_u)
        i = e_i + self.lambda_id * self._fused(z_i, e_i)
        user_sum, item_sum = u, i
        for _ in range(self.num_layers):
            u, i = (self._propagate(i, graph.item_to_user),
                    self._propagate(u, graph.user_to_item))
            user_sum, item_sum = user_sum + u, item_sum + i
        return MMSSLEmbedding(self, user_sum, item_sum, user_id_modal,
                              item_id_modal, att, modal)

    def get_embedding(self) -> RecEmbedding:
        out = self.forward()
        return self.with_item_bias(RecEmbedding(out.user_at(),
                                                out.item_at()))

    # Adversarial structure learning #########################################

    def _train_mask_at(self, row: Tensor, col: Tensor, num_rows: int
                       ) -> Tensor:
        r"""``[B, I]`` indicator with ones at ``(row, col)``."""
        mask = torch.zeros(num_rows, self.num_items, device=row.device)
        mask[row, col] = 1.
        return mask

    def generated_distribution(self, user_emb: Tensor, item_emb: Tensor,
                               train_mask: Tensor) -> Tensor:
        r""":math:`\overline{(1 - \mathbf{r}_u) \odot \mathbf{p}_u
        \mathbf{P}_i^\top}`: scores of the items the user has not
        interacted with, L2-normalised per row."""
        return F.normalize((user_emb @ item_emb.t()) * (1 - train_mask),
                           dim=-1)

    def real_distribution(self, train_mask: Tensor, user_emb: Tensor,
                          item_emb: Tensor) -> Tensor:
        r"""Gumbel-softmax of the observed rows,
        :math:`\mathrm{softmax}((\mathbf{r}_u + \epsilon \mathbf{g}) /
        \tau_{real})` with Gumbel noise :math:`\mathbf{g}`, plus
        :obj:`real_mix` times the (detached) collaborative score
        distribution, L2-normalised per row."""
        if self.gumbel:
            noise = gumbel_noise(train_mask.shape, train_mask.device,
                                 train_mask.dtype)
            real = torch.softmax((train_mask + self.gumbel_eps * noise) /
                                 self.tau_real, dim=-1)
        else:
            real = train_mask / train_mask.sum(-1, keepdim=True).clamp(min=1)
        collab = self.generated_distribution(user_emb.detach(),
                                             item_emb.detach(), train_mask)
        return F.normalize(real + self.real_mix * collab, dim=-1)

    def real_rows(self, row: Tensor, col: Tensor, user_emb: Tensor,
                  item_emb: Tensor) -> CriticRows:
        r""":meth:`real_distribution` in factorised form, for users with
        training items at ``(row, col)`` (every user has at least one). When
        :func:`gumbel_softmax_is_sparse` (the presets' :math:`\tau_{real}`),
        the Gumbel-softmax is computed on the training items only: it is
        exactly zero elsewhere. Otherwise it is a dense part."""
        num_rows = user_emb.size(0)
        collab = masked_score_rows(user_emb.detach(), item_emb.detach(), row,
                                   col).normalize()
        dense = None
        if not self.gumbel:
            count = torch.bincount(row, minlength=num_rows).clamp(min=1)
            real = 1 / count[row].to(collab.value.dtype)
        elif gumbel_softmax_is_sparse(self.tau_real, self.gumbel_eps,
                                      collab.value.dtype):
            noise = gumbel_noise(row.shape, row.device, collab.value.dtype)
            real = softmax((1 + self.gumbel_eps * noise) / self.tau_real, row,
                           num_nodes=num_rows)
        else:
            mask = self._train_mask_at(row, col, num_rows)
            noise = gumbel_noise(mask.shape, mask.device, mask.dtype)
            dense = torch.softmax((mask + self.gumbel_eps * noise) /
                                  self.tau_real, dim=-1)
            real = torch.zeros_like(collab.value)
        return CriticRows(self.real_mix * collab.left, collab.right, row, col,
                          real + self.real_mix * collab.value,
                          dense).normalize()

    # Loss ##################################################################

    def _critic_rows(self, batch_users: Tensor, out: MMSSLEmbedding):
        r"""The critic's inputs for ``batch_users``: their real rows
        (:meth:`real_distribution`) and one generated row set per modality
        (:meth:`generated_distribution`), as :class:`RowSource` that the
        critic builds in the form it reads."""
        row, col = csr_rows(self.train_csr(), batch_users)
        num_rows = batch_users.numel()

        def mask() -> Tensor:
            return self._train_mask_at(row, col, num_rows)

        def fake(m: str) -> RowSource:
            user, item = out.user_modal[m][batch_users], out.item_modal[m]
            return RowSource(
                lambda: self.generated_distribution(user, item, mask()),
                lambda: masked_score_rows(user, item, row, col).normalize())

        user, item = out.user[batch_users], out.item
        real = RowSource(
            lambda: self.real_distribution(mask(), user, item),
            lambda: self.real_rows(row, col, user, item))
        return real, [fake(m) for m in self.modalities]

    def critic_loss(self, user: Tensor, out: MMSSLEmbedding) -> Tensor:
        r"""The critic's WGAN-GP loss :math:`\mathcal{L}_D` on the users of
        a batch, from ``out`` (a :meth:`forward` output, detached: only the
        critic learns from it): their real rows against each modality's
        generated rows (see :class:`Discriminator`)."""
        real, fake = self._critic_rows(torch.unique(user), out)
        return self.discriminator.loss(real, fake, self.gp_weight)

    def loss(self, user: Tensor, pos: Tensor, neg: Tensor,
             out: Optional[MMSSLEmbedding] = None) -> Dict[str, Tensor]:
        r"""Named terms of one training step, from ``out`` (this step's
        :meth:`forward` output; computed if omitted):

        .. math::
            \mathcal{L} = \mathcal{L}_{BPR} + \lambda_{reg} \mathcal{L}_{reg}
            + \lambda_{feat} \mathcal{L}_{feat} + \lambda_{cl}
            \mathcal{L}_{cl} + \lambda_{G} \mathcal{L}_{adv}

        with the generator's term :math:`\mathcal{L}_{adv} =
        -\mathbb{E}[D(\bar{\mathbf{s}})]` under the current critic (the
        trainer updates the critic first, :meth:`critic_loss`). Changes no
        state (see :meth:`Discriminator.frozen`).
        """
        if out is None:
            out = self()
        # Each distinct user and item of the batch once.
        batch_users, user_inv = torch.unique(user, return_inverse=True)
        batch_items, item_inv = torch.unique(torch.cat([pos, neg]),
                                             return_inverse=True)
        user_b, user_modal = out.at('user', batch_users)
        item_b, item_modal = out.at('item', batch_items)
        scored = self.with_item_bias(RecEmbedding(user_b, item_b),
                                     batch_items)
        zero = user_b.new_zeros(())
        bpr = bpr_loss(scored.user[user_inv],
                       *scored.item[item_inv].split(pos.numel()))
        reg = l2_reg(self.user_emb.weight[user], self.item_emb.weight[pos],
                     self.item_emb.weight[neg])
        feat = sum(l2_reg(user_modal[m][user_inv], item_modal[m][item_inv])
                   for m in self.modalities)

        cl = zero
        if self.contrastive:
            # One InfoNCE per distinct view, counted once per modality that
            # shares it (without structure learning all modalities do).
            views: Dict[int, List] = {}
            for view in out.user_id_modal.values():
                views.setdefault(id(view), [view, 0])[1] += 1
            cl = sum(count * info_nce(view[batch_users], user_b, self.tau)
                     for view, count in views.values())

        adv = zero
        if self.discriminator is not None:
            _, fake = self._critic_rows(batch_users, out)
            with record_function('mmssl.generator'), \
                    self.discriminator.frozen():
                adv = -self.discriminator(fake).mean()

        total = (bpr + self.reg * reg + self.feat_reg * feat +
                 self.cl_rate * cl + self.g_rate * adv)
        return {'loss': total, 'bpr': bpr, 'reg': reg, 'feat_reg': feat,
                'cl': cl, 'adv': adv}

    def __repr__(self) -> str:
        return (f'{self.__class__.__name__}({self.num_users} users, '
                f'{self.num_items} items, modalities={self.modalities}, '
                f'dim={self.embedding_dim}, k={self.k})')
