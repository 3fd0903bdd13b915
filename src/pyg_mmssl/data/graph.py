r"""The one in-memory representation of a multimodal recommendation dataset.

Every loader ends in :func:`build_data`, which validates its inputs and returns a
:class:`~torch_geometric.data.HeteroData` with

* node types ``user`` and ``item`` (``num_nodes`` set on both),
* one item feature matrix per modality, stored as ``data['item'][modality]`` and
  listed (in order) in ``data.modalities``,
* the training interactions as ``('user', 'interacts', 'item')`` and its reverse
  ``('item', 'rev_interacts', 'user')``,
* the validation and test interactions as ``val_edge_index`` / ``test_edge_index`` on
  the forward edge type. They are *not* named ``edge_index``, so no message passing
  layer ever sees them.
"""
import logging
from typing import Dict, Mapping, Optional, Sequence, Tuple

import numpy as np
import torch
from torch import Tensor
from torch_geometric.data import HeteroData

log = logging.getLogger(__name__)

USER, ITEM, INTERACTS = 'user', 'item', 'interacts'
EDGE = (USER, INTERACTS, ITEM)
REV_EDGE = (ITEM, f'rev_{INTERACTS}', USER)
SPLITS = ('train', 'val', 'test')


class DataError(ValueError):
    r"""Raised for malformed or inconsistent input data. Its message names the
    source (file), the offending row or key and what was expected, on one line
    (line breaks, e.g. in a parser's own message, become spaces)."""
    def __init__(self, message: str):
        super().__init__(' '.join(str(message).splitlines()))


def _as_edge_index(pairs, source: str) -> Tensor:
    try:
        pairs = torch.as_tensor(pairs)
    except (TypeError, ValueError, RuntimeError, OverflowError) as e:
        raise DataError(f"{source}: expected a [2, E] array of integer "
                        f"user/item ids ({e})") from e
    if pairs.numel() == 0:
        return pairs.new_empty((2, 0), dtype=torch.long)
    if pairs.dim() != 2 or pairs.size(0) != 2:
        raise DataError(f"{source}: expected interactions of shape [2, E], "
                        f"got {tuple(pairs.shape)}")
    if pairs.dtype == torch.bool or pairs.is_complex() or (
            pairs.is_floating_point() and not bool(
                (pairs == pairs.round()).all()
                and (pairs.abs() < 2.0**63).all())):
        raise DataError(f"{source}: user/item ids must be integers, got "
                        f"dtype {pairs.dtype}")
    return pairs.long()


def check_ids(edge_index: Tensor, num_users: int, num_items: int,
              source: str) -> None:
    r"""Raises a :class:`DataError` naming the first interaction whose user or item
    id is negative or out of range."""
    for row, name, size in ((0, 'user', num_users), (1, 'item', num_items)):
        ids = edge_index[row]
        bad = ((ids < 0) | (ids >= size)).nonzero().view(-1)
        if bad.numel() > 0:
            k = int(bad[0])
            raise DataError(
                f"{source}: interaction #{k} (user {int(edge_index[0, k])}, "
                f"item {int(edge_index[1, k])}) has {name} id {int(ids[k])}, "
                f"expected 0 <= {name} id < {size}")


def _pair_keys(edge_index: Tensor, num_items: int) -> Tensor:
    # One int64 per (user, item) pair; build_data ensures it cannot overflow.
    return edge_index[0] * num_items + edge_index[1]


def deduplicate(edge_index: Tensor, num_items: int, source: str) -> Tensor:
    r"""Removes repeated (user, item) pairs with a warning; keeps the order of the
    first occurrence sorted by user, then item."""
    key = _pair_keys(edge_index, num_items)
    uniq = torch.unique(key)
    if uniq.numel() < key.numel():
        log.warning("%s: removed %d duplicate interaction(s)", source,
                    key.numel() - uniq.numel())
    return torch.stack([uniq // num_items, uniq % num_items])


def warn_seen_in_train(edge_index: Tensor, train_edge_index: Tensor,
                       num_items: int, split: str, source: str) -> None:
    r"""Warns with their count about held-out (user, item) pairs that are also
    training pairs: ranking excludes a user's training items, so these can
    never be ranked."""
    seen = torch.isin(_pair_keys(edge_index, num_items),
                      _pair_keys(train_edge_index, num_items))
    if bool(seen.any()):
        log.warning("%s: %d %s interaction(s) are also training interactions;"
                    " they can never be ranked (training items are excluded at"
                    " ranking)", source, int(seen.sum()), split)


def check_feature_layout(shape: Tuple[int, ...], dtype, source: str) -> None:
    r"""Raises a :class:`DataError` unless a feature matrix of this ``shape`` and
    ``dtype`` (numpy or torch) is a 2-D matrix of real numbers with at least one
    column: the checks that need no data (a ``.npy`` header suffices)."""
    if isinstance(dtype, torch.dtype):
        real = dtype != torch.bool and not dtype.is_complex
    else:
        real = np.dtype(dtype).kind in 'iuf'
    if not real:
        raise DataError(f"{source}: expected real numbers (an integer or float "
                        f"dtype), got dtype {dtype}")
    if len(shape) != 2:
        raise DataError(f"{source}: expected a 2-D [num_items, dim] feature "
                        f"matrix, got shape {tuple(shape)}")
    if shape[1] == 0:
        raise DataError(f"{source}: has 0 feature columns, expected at least "
                        f"one")


def check_features(x, num_items: int, source: str) -> Tensor:
    r"""Validates one modality's item feature matrix (see
    :func:`check_feature_layout`): one row per item, finite as float32.
    Features of any other real dtype are cast to float32."""
    check_feature_layout(tuple(x.shape), x.dtype, source)
    if isinstance(x, np.ndarray):
        # numpy casts what torch cannot take (uint64, long double, big-endian).
        with np.errstate(over='ignore'):
            x = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))
    x = torch.as_tensor(x)
    if x.size(0) != num_items:
        raise DataError(f"{source}: has {x.size(0)} feature rows, expected one "
                        f"per item ({num_items} items)")
    x = x.float()
    finite = torch.isfinite(x)
    if not bool(finite.all()):
        row = int((~finite).any(dim=1).nonzero()[0])
        raise DataError(f"{source}: row {row} contains NaN, Inf or a value too "
                        f"large for float32")
    return x


def build_data(
    num_users: int,
    num_items: int,
    splits: Mapping[str, object],
    features: Mapping[str, object],
    sources: Optional[Mapping[str, str]] = None,
) -> HeteroData:
    r"""Validates interactions and features and assembles the
    :class:`~torch_geometric.data.HeteroData` described in this module.

    Args:
        num_users (int): Number of users.
        num_items (int): Number of items.
        splits (dict): ``'train'``, ``'val'`` and ``'test'`` interactions, each a
            ``[2, E]`` tensor or array of ``(user, item)`` ids.
        features (dict): Item features per modality, each ``[num_items, d_m]``.
        sources (dict, optional): Human-readable origin of each split and
            modality (e.g. a file name), used in error messages.
    """
    sources = dict(sources or {})
    if num_users <= 0 or num_items <= 0:
        raise DataError(f"need at least one user and one item, got "
                        f"{num_users} users and {num_items} items")
    if int(num_users) * int(num_items) >= 2**63:
        raise DataError(f"{num_users} users x {num_items} items is too large: "
                        f"need fewer than 2**63 (user, item) pairs")
    data = HeteroData()
    data[USER].num_nodes = int(num_users)
    data[ITEM].num_nodes = int(num_items)

    edges: Dict[str, Tensor] = {}
    for split in SPLITS:
        if split not in splits:
            raise DataError(f"missing the '{split}' split")
        source = sources.get(split, f"{split} split")
        ei = _as_edge_index(splits[split], source)
        if ei.size(1) == 0:
            raise DataError(f"{source}: the {split} split has no interactions")
        check_ids(ei, num_users, num_items, source)
        edges[split] = deduplicate(ei, num_items, source)
        if split != 'train':
            warn_seen_in_train(edges[split], edges['train'], num_items,
                               split, source)

    data[EDGE].edge_index = edges['train']
    data[REV_EDGE].edge_index = edges['train'].flip(0)
    data[EDGE].val_edge_index = edges['val']
    data[EDGE].test_edge_index = edges['test']

    data.modalities = list(features)
    for name, x in features.items():
        data[ITEM][name] = check_features(x, num_items,
                                          sources.get(name, f"'{name}' features"))
    return data


def split_edge_index(data: HeteroData, split: str,
                     edge_type: Tuple[str, str, str] = EDGE) -> Tensor:
    r"""Returns the ``[2, E]`` (user, item) interactions of ``split``."""
    if split not in SPLITS:
        raise ValueError(f"unknown split '{split}', expected one of {SPLITS}")
    key = 'edge_index' if split == 'train' else f'{split}_edge_index'
    return data[edge_type][key]


def modality_features(data: HeteroData,
                      modalities: Optional[Sequence[str]] = None,
                      node_type: str = ITEM) -> Dict[str, Tensor]:
    r"""Returns ``{modality: features}`` of the item nodes."""
    if modalities is None:
        modalities = getattr(data, 'modalities', None) or []
    out = {}
    for m in modalities:
        if m not in data[node_type]:
            raise ValueError(f"node type '{node_type}' has no feature '{m}'")
        out[m] = data[node_type][m]
    return out


def to_csr(edge_index: Tensor, num_rows: int,
           num_cols: int) -> Tuple[Tensor, Tensor]:
    r"""Row pointer and column indices of a ``[2, E]`` (row, col) edge list: a
    CSR pattern without values, columns sorted within each row."""
    perm = torch.argsort(edge_index[0] * num_cols + edge_index[1])
    row, col = edge_index[0, perm], edge_index[1, perm]
    rowptr = torch.zeros(num_rows + 1, dtype=torch.long, device=row.device)
    rowptr[1:] = torch.cumsum(torch.bincount(row, minlength=num_rows), 0)
    return rowptr, col


def statistics(data: HeteroData) -> Dict[str, object]:
    r"""Sizes, density and feature dimensions of a dataset, and what its
    held-out splits ask of a model (``pyg-mmssl info``): for ``val`` and
    ``test``, the users with held-out interactions, their median number of
    training interactions, and the share of held-out interactions on the
    10% most-trained items (``train_on_top_items`` is that share for the
    training interactions; the top :math:`\lceil I / 10 \rceil` items by
    training count, ties by item id). Few training interactions per
    evaluated user and a held-out share at or above the training one make
    a split that popularity alone scores well on (compare ``MostPop``); a
    held-out share below it makes popularity a worse guess than in
    training."""
    num_users, num_items = data[USER].num_nodes, data[ITEM].num_nodes
    stats: Dict[str, object] = {'users': num_users, 'items': num_items}
    edges = {split: split_edge_index(data, split) for split in SPLITS}
    for split in SPLITS:
        stats[f'{split}_interactions'] = edges[split].size(1)
    train = edges['train']
    stats['density'] = train.size(1) / (num_users * num_items)
    user_deg = torch.bincount(train[0], minlength=num_users)
    item_deg = torch.bincount(train[1], minlength=num_items)
    stats['users_without_train'] = int((user_deg == 0).sum())
    stats['items_without_train'] = int((item_deg == 0).sum())
    order = torch.sort(item_deg, descending=True, stable=True).indices
    top = torch.zeros(num_items, dtype=torch.bool)
    top[order[:-(-num_items // 10)]] = True

    def share(items: Tensor) -> float:
        return round(float(top[items].float().mean()), 4) \
            if items.numel() else 0.

    stats['train_on_top_items'] = share(train[1])
    for split in SPLITS[1:]:
        held = edges[split]
        users = torch.unique(held[0])
        stats[f'{split}_users'] = users.numel()
        stats[f'{split}_users_median_train'] = float(
            user_deg[users].float().median()) if users.numel() else 0.
        stats[f'{split}_on_top_items'] = share(held[1])
    stats['modalities'] = {m: int(x.size(1))
                           for m, x in modality_features(data).items()}
    return stats
