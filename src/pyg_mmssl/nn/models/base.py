r"""What every pyg_mmssl recommender shares, and the interface the trainer
drives: ``forward``, ``loss`` (named terms), ``get_embedding`` and
``recommend``, plus the training hooks of models that learn more than
embeddings (``schedule``, ``critic_loss``, ``refresh_graphs``)."""
import difflib
import inspect
from typing import (Callable, Dict, Iterable, List, NamedTuple, Optional,
                    Sequence)

import torch
from torch import Tensor
from torch_geometric.data import HeteroData

from pyg_mmssl.data.graph import modality_features, split_edge_index, \
    to_csr
from pyg_mmssl.nn.adjacency import (BACKENDS, BipartiteGraph, Propagation,
                                    check_backend, default_backend,
                                    homogeneous_adjacency)
from pyg_mmssl.nn.losses import bpr_loss, l2_reg
from pyg_mmssl.ranking import CSR, topk_chunks

#: How a model's optional per-item score bias starts
#: (:meth:`Recommender.init_item_bias`).
ITEM_BIASES = ('none', 'zero', 'popularity')


class RecEmbedding(NamedTuple):
    user: Tensor
    item: Tensor


def _append_dimension(emb: RecEmbedding, user: Tensor,
                      item: Tensor) -> RecEmbedding:
    r"""``emb`` with one more dimension, ``user`` (``[U]``) for the users
    and ``item`` (``[I]``) for the items: every score :math:`s_{ui}` gains
    ``user[u] * item[i]``."""
    return RecEmbedding(
        torch.cat([emb.user, user.view(-1, 1).to(emb.user)], 1),
        torch.cat([emb.item, item.view(-1, 1).to(emb.item)], 1))


class Schedule(NamedTuple):
    r"""When the trainer calls a model's training hooks
    (:meth:`Recommender.schedule`): ``critic_steps`` updates of the critic
    per step (:meth:`Recommender.critic_loss`, minimised by the critic's own
    optimiser before :meth:`Recommender.loss` is computed), and
    :meth:`Recommender.refresh_graphs` every ``refresh_every`` steps,
    counting from the first (``0``: never)."""
    critic_steps: int = 0
    refresh_every: int = 0


class UserSharding(NamedTuple):
    r"""How a computation over all users is split between processes (the
    trainer passes one to :meth:`Recommender.refresh_graphs` under
    :mod:`torch.distributed`): ``users(num_users)`` is the slice of users
    this process computes, ``sync(t)`` the tensor every process uses in
    place of ``t`` (rank 0's), ``gather(t)`` every process's rows of ``t``
    concatenated in rank order."""
    users: Callable[[int], slice]
    sync: Callable[[Tensor], Tensor]
    gather: Callable[[Tensor], Tensor]


class Recommender(torch.nn.Module):
    r"""Base class of the models the trainer drives.

    A model is bound to its training graph (``(user, item)`` pairs, stored as
    a non-persistent buffer so that it follows ``.to(device)``); normalised
    adjacencies are built once and cached until the model moves or is cast
    (see :meth:`bipartite_graph`).

    Subclasses implement :meth:`get_embedding` (or :meth:`forward`) and
    :meth:`loss`; those with :attr:`multimodal` set take item features per
    modality as their fourth argument. One training step of the trainer is

    .. code-block:: python

        out = model()                          # forward, shared by all below
        for _ in range(model.schedule().critic_steps):
            critic_optimizer.minimize(model.critic_loss(user, out))
        terms = model.loss(user, pos, neg, out)
        if step % model.schedule().refresh_every == 0:
            model.refresh_graphs(out)
        optimizer.minimize(terms['loss'])

    ``loss`` changes no state, ``critic_loss`` only the critic's batch-norm
    statistics (as any training forward pass through batch norm);
    ``refresh_graphs`` is the one hook that changes the model.
    """
    multimodal = False
    #: Whether the model learns (has parameters to train and tune).
    trainable = True
    #: Allowed values of constructor arguments, for configs and the CLI.
    choices: Dict[str, Sequence[str]] = {'backend': BACKENDS}

    def __init__(self, num_users: int, num_items: int,
                 train_edge_index: Tensor, backend: Optional[str] = None):
        super().__init__()
        self.num_users = num_users
        self.num_items = num_items
        self.backend = None if backend is None else check_backend(backend)
        self.register_buffer('train_edge_index', train_edge_index.long(),
                             persistent=False)
        # The weight of the popularity adjustment of rankings (see
        # ranking_embedding); 0 ranks by the model's scores alone.
        self.register_buffer('popularity_weight', torch.zeros(()))
        self._graph_cache: Dict[str, object] = {}

    @classmethod
    def from_data(cls, data: HeteroData, user: str = 'user',
                  item: str = 'item', edge: str = 'interacts',
                  modalities: Optional[Sequence[str]] = None, **kwargs):
        r"""Builds the model for a :class:`HeteroData`: node types ``user``
        and ``item``, training edges ``(user, edge, item)``, and for
        multimodal models the item features ``data[item][m]`` of each
        modality ``m`` (default: ``data.modalities``). ``kwargs`` are the
        model's options; one it does not have raises :class:`ValueError`."""
        options = [name for name, p in inspect.signature(
            cls.__init__).parameters.items()
            if p.default is not inspect.Parameter.empty]
        unknown = [name for name in kwargs if name not in options]
        if unknown:
            near = difflib.get_close_matches(unknown[0], options, n=1)
            hint = f"; did you mean '{near[0]}'?" if near else \
                f" (options: {', '.join(options)})"
            raise ValueError(f"{cls.__name__} has no option '{unknown[0]}'"
                             f"{hint}")
        args = [data[user].num_nodes, data[item].num_nodes,
                split_edge_index(data, 'train', (user, edge, item))]
        if cls.multimodal:
            features = modality_features(data, modalities, node_type=item)
            if not features and modalities is None:
                raise ValueError(f"{cls.__name__} needs item features: the "
                                 f"dataset has no modalities (no "
                                 f"'<modality>_feat.npy' files)")
            args.append(features)
        elif modalities is not None:
            raise ValueError(f"{cls.__name__} takes no modalities")
        return cls(*args, **kwargs)

    # Graph #################################################################

    def propagation_backend(self) -> str:
        return self.backend or default_backend(self.train_edge_index.device)

    @property
    def graph_dtype(self) -> torch.dtype:
        r"""The dtype of the normalised adjacency weights: the parameters'
        (``float32`` unless the model was cast)."""
        return next((p.dtype for p in self.parameters()
                     if p.is_floating_point()), torch.float32)

    def cached_graph(self, key: str, build: Callable[[], object]):
        r"""Returns the object ``build()`` made for ``key``, building it
        once (until the cache is cleared)."""
        if key not in self._graph_cache:
            self._graph_cache[key] = build()
        return self._graph_cache[key]

    def _apply(self, fn, *args, **kwargs):
        # ``.to()``, ``.cuda()``, ``.double()``, ...: cached graphs are
        # rebuilt from the moved buffers when next needed.
        self._graph_cache = {}
        return super()._apply(fn, *args, **kwargs)

    def __getstate__(self):
        # Copies and pickles leave the cache behind (it rebuilds; sparse CSR
        # tensors cannot be deep-copied).
        state = dict(super().__getstate__())
        state['_graph_cache'] = {}
        return state

    def clear_graph_cache(self, key: Optional[str] = None):
        if key is None:
            self._graph_cache = {}
        else:
            self._graph_cache.pop(key, None)

    def bipartite_graph(self) -> BipartiteGraph:
        r"""The symmetrically normalised training graph."""
        return self.cached_graph('train', lambda: BipartiteGraph.build(
            self.train_edge_index, self.num_users, self.num_items,
            backend=self.propagation_backend(), dtype=self.graph_dtype))

    def homogeneous_graph(self, normalize: str = 'sym') -> Propagation:
        r"""The normalised :math:`(U + I) \times (U + I)` training graph
        (items offset by :math:`U`), for layers over one index space."""
        return self.cached_graph(f'homogeneous_{normalize}', lambda:
                                 homogeneous_adjacency(
                                     self.train_edge_index, self.num_users,
                                     self.num_items, normalize,
                                     self.propagation_backend(),
                                     self.graph_dtype))

    @torch.no_grad()
    def reset_id_embeddings(self, weight: Tensor):
        r"""Xavier-uniform initialisation of a ``[U + I, d]`` ID table as
        two tables, users and items (each with its own bound
        :math:`\sqrt{6 / (n + d)}`), as MMRec's models initialise theirs."""
        torch.nn.init.xavier_uniform_(weight[:self.num_users])
        torch.nn.init.xavier_uniform_(weight[self.num_users:])

    def register_features(self, modality_features: Dict[str, Tensor],
                          trainable: bool) -> List[Tensor]:
        r"""Stores each modality's raw ``[I, d_m]`` item features (as float)
        under ``feat_<j>``: a parameter when ``trainable`` (as MMRec's
        models fine-tune them), else a non-persistent buffer; sets
        :obj:`modalities`. A matrix of another shape is one line of
        :class:`ValueError`. Returns the stored tensors."""
        self.modalities = list(modality_features)
        for j, (m, x) in enumerate(modality_features.items()):
            if x.dim() != 2 or x.size(0) != self.num_items:
                raise ValueError(f"features of modality '{m}' must be "
                                 f"[{self.num_items}, d], got "
                                 f"{tuple(x.shape)}")
            x = x.float()
            if trainable:
                self.register_parameter(f'feat_{j}',
                                        torch.nn.Parameter(x.clone()))
            else:
                self.register_buffer(f'feat_{j}', x, persistent=False)
        return self.features()

    def features(self) -> List[Tensor]:
        r"""The raw features of each modality, as :meth:`register_features`
        stored them."""
        return [getattr(self, f'feat_{j}')
                for j in range(len(self.modalities))]

    def split_nodes(self, x: Tensor) -> RecEmbedding:
        r"""Splits a ``[U + I, d]`` node matrix into users and items."""
        return RecEmbedding(x[:self.num_users], x[self.num_users:])

    def bpr_terms(self, emb: RecEmbedding, user: Tensor, pos: Tensor,
                  neg: Tensor, ids: Tensor, *extra: Tensor
                  ) -> Dict[str, Tensor]:
        r"""BPR on ``emb`` plus ``self.reg`` times the L2 term of the batch's
        rows of the ``[U + I, d]`` ID table ``ids`` (and of ``extra`` batch
        tensors)."""
        bpr = bpr_loss(emb.user[user], emb.item[pos], emb.item[neg])
        reg = l2_reg(ids[user], ids[self.num_users + pos],
                     ids[self.num_users + neg], *extra)
        return {'loss': bpr + self.reg * reg, 'bpr': bpr, 'reg': reg}

    def init_item_bias(self, item_bias: str = 'none', scale: float = 1.0):
        r"""Gives the model a learned per-item score bias :math:`b_i`
        (unless ``item_bias`` is ``"none"``), which :meth:`with_item_bias`
        adds to every score, :math:`s_{ui} = \mathbf{e}_u^\top \mathbf{e}_i
        + b_i`. It starts at zero (``"zero"``) or at the popularity prior
        (``"popularity"``)

        .. math::
            b_i = s \, \big(\log(1 + n_i) - \tfrac{1}{I} \textstyle\sum_j
            \log(1 + n_j)\big)

        with :math:`n_i` the item's training interactions and :math:`s` =
        ``scale``: before any step the model ranks by training counts, as
        :class:`MostPop` does. Call from ``__init__`` (it sets the start),
        and :meth:`reset_item_bias` from ``reset_parameters``."""
        if item_bias not in ITEM_BIASES:
            raise ValueError(f"unknown item_bias '{item_bias}', expected one "
                             f"of {ITEM_BIASES}")
        self.item_bias_init, self.item_bias_scale = item_bias, scale
        self.item_bias = torch.nn.Parameter(torch.zeros(self.num_items)) \
            if item_bias != 'none' else None
        self.reset_item_bias()

    @torch.no_grad()
    def reset_item_bias(self):
        r"""Sets the item bias to its start (see :meth:`init_item_bias`)."""
        if self.item_bias is None:
            return
        self.item_bias.zero_()
        if self.item_bias_init == 'popularity':
            self.item_bias.copy_(self.item_bias_scale *
                                 self.log_popularity())

    def log_popularity(self) -> Tensor:
        r"""The centred log training count of every item,
        :math:`p_i = \log(1 + n_i) - \frac{1}{I} \sum_j \log(1 + n_j)`
        (``[num_items]``, float)."""
        def build() -> Tensor:
            count = torch.bincount(self.train_edge_index[1],
                                   minlength=self.num_items)
            log = torch.log1p(count.float())
            return log - log.mean()
        return self.cached_graph('log_popularity', build)

    def ranking_embedding(self) -> RecEmbedding:
        r""":meth:`get_embedding`, with the popularity adjustment as one more
        dimension where its weight :math:`w` (the buffer
        ``popularity_weight``) is not zero, :math:`[\mathbf{e}_u, w]^\top
        [\mathbf{e}_i, p_i] = \mathbf{e}_u^\top \mathbf{e}_i + w \, p_i`
        with :math:`p_i` of :meth:`log_popularity`: what evaluation and
        :meth:`recommend` rank by. Training scores never include it; the
        trainer chooses :math:`w` on validation after training
        (:meth:`~pyg_mmssl.train.Trainer.adjust_popularity`)."""
        emb = self.get_embedding()
        if float(self.popularity_weight) == 0:
            return emb
        return _append_dimension(
            emb, self.popularity_weight.expand(emb.user.size(0)),
            self.log_popularity())

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        # Checkpoints written before the popularity adjustment have no
        # weight: they rank unadjusted.
        state_dict.setdefault(prefix + 'popularity_weight', torch.zeros(()))
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def with_item_bias(self, emb: RecEmbedding,
                       items: Optional[Tensor] = None) -> RecEmbedding:
        r"""``emb`` with the item bias as one more dimension,
        :math:`[\mathbf{e}_u, 1]^\top [\mathbf{e}_i, b_i] =
        \mathbf{e}_u^\top \mathbf{e}_i + b_i`, so that every dot product
        (the BPR loss, ranking) scores with it; ``emb`` itself without
        one. ``emb.item`` holds every item, or the rows of ``items``."""
        bias = getattr(self, 'item_bias', None)
        if bias is None:
            return emb
        return _append_dimension(emb, emb.user.new_ones(emb.user.size(0)),
                                 bias if items is None else bias[items])

    def train_csr(self) -> CSR:
        r"""Training items of each user as a CSR pattern (for masking)."""
        return self.cached_graph('train_csr', lambda: to_csr(
            self.train_edge_index, self.num_users, self.num_items))

    # Interface #############################################################

    def get_embedding(self) -> RecEmbedding:
        r"""Final user and item embeddings (what ranking scores)."""
        raise NotImplementedError

    def forward(self) -> RecEmbedding:
        r"""The forward pass a training step shares between its hooks and
        :meth:`loss`; :meth:`get_embedding` unless a model needs more."""
        return self.get_embedding()

    def loss(self, user: Tensor, pos: Tensor, neg: Tensor,
             out: Optional[RecEmbedding] = None) -> Dict[str, Tensor]:
        r"""Named loss terms of one BPR batch, from ``out``, this step's
        :meth:`forward` output (computed if omitted); ``"loss"`` is their
        weighted sum, the value the recommender's optimiser minimises.
        Changes no state."""
        raise NotImplementedError

    def schedule(self) -> Schedule:
        r"""Which training hooks the trainer calls, and how often (no critic,
        no learned graphs by default)."""
        return Schedule()

    def critic_loss(self, user: Tensor, out: RecEmbedding) -> Tensor:
        r"""The loss of the model's critic (its
        :meth:`discriminator_parameters`) on a batch's users, from this
        step's :meth:`forward` output; called when :meth:`schedule` has
        ``critic_steps``."""
        raise NotImplementedError(f"{self.__class__.__name__} has no critic")

    def refresh_graphs(self, out: RecEmbedding,
                       sharding: Optional[UserSharding] = None):
        r"""Re-learns the model's graphs from this step's :meth:`forward`
        output; called every ``schedule().refresh_every`` steps. With a
        ``sharding``, the work over users is split between processes."""

    def discriminator_parameters(self) -> List[torch.nn.Parameter]:
        r"""Parameters trained by the discriminator's own optimiser."""
        return []

    def recommender_parameters(self) -> Iterable[torch.nn.Parameter]:
        skip = {id(p) for p in self.discriminator_parameters()}
        return [p for p in self.parameters() if id(p) not in skip]

    @torch.no_grad()
    def recommend(self, user: Tensor, k: int = 20,
                  exclude: Optional[CSR] = None,
                  exclude_train: bool = True) -> Tensor:
        r"""Top-``k`` items for each user in ``user`` (``[B, min(k, I)]``,
        best first), never returning a training item (with
        :obj:`exclude_train`) or an item of the extra ``exclude`` CSR
        pattern. A user with fewer than ``k`` admissible items gets them all,
        followed by ``-1`` in the remaining slots."""
        emb = self.ranking_embedding()
        device = emb.user.device
        masks = [self.train_csr()] if exclude_train else []
        if exclude is not None:
            masks.append(tuple(t.to(device) for t in exclude))
        # Excluded items score -inf and come last, so they are the slots to
        # blank.
        out = [top.indices.masked_fill(top.values == float('-inf'), -1)
               for _, top in topk_chunks(emb.user, emb.item, k,
                                         user.to(device), masks)]
        return torch.cat(out) if out else user.new_empty(
            (0, min(k, self.num_items)))
