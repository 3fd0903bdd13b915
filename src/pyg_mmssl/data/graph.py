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
    source (file), the offending row or key and what was expected."""


def _as_edge_index(pairs, source: str) -> Tensor:
    if isinstance(pairs, np.ndarray):
        pairs = torch.from_numpy(pairs)
    pairs = torch.as_tensor(pairs)
    if pairs.numel() == 0:
        return pairs.new_empty((2, 0), dtype=torch.long)
    if pairs.dim() != 2 or pairs.size(0) != 2:
        raise DataError(f"{source}: expected interactions of shape [2, E], "
                        f"got {tuple(pairs.shape)}")
    if pairs.is_floating_point():
        if not torch.equal(pairs, pairs.round()):
            raise DataError(f"{source}: user/item ids must be integers")
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


def deduplicate(edge_index: Tensor, num_items: int, source: str) -> Tensor:
    r"""Removes repeated (user, item) pairs with a warning; keeps the order of the
    first occurrence sorted by user, then item."""
    key = edge_index[0] * num_items + edge_index[1]
    uniq = torch.unique(key)
    if uniq.numel() < key.numel():
        log.warning("%s: removed %d duplicate interaction(s)", source,
                    key.numel() - uniq.numel())
    return torch.stack([uniq // num_items, uniq % num_items])


def check_features(x, num_items: int, source: str) -> Tensor:
    r"""Validates one modality's item feature matrix: two-dimensional, one row per
    item, finite. float16 (and other float) features are upcast to float32."""
    if isinstance(x, np.ndarray):
        if not np.issubdtype(x.dtype, np.number):
            raise DataError(f"{source}: expected numeric features, got dtype "
                            f"{x.dtype}")
        x = torch.from_numpy(np.ascontiguousarray(x))
    x = torch.as_tensor(x)
    if x.dim() != 2:
        raise DataError(f"{source}: expected a 2-D [num_items, dim] feature "
                        f"matrix, got shape {tuple(x.shape)}")
    if x.size(0) != num_items:
        raise DataError(f"{source}: has {x.size(0)} feature rows, expected one "
                        f"per item ({num_items} items)")
    x = x.float()
    finite = torch.isfinite(x)
    if not bool(finite.all()):
        row = int((~finite).any(dim=1).nonzero()[0])
        raise DataError(f"{source}: row {row} contains NaN or Inf")
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
    r"""Sizes, density and feature dimensions of a dataset (``pyg-mmssl info``)."""
    num_users, num_items = data[USER].num_nodes, data[ITEM].num_nodes
    stats: Dict[str, object] = {'users': num_users, 'items': num_items}
    for split in SPLITS:
        stats[f'{split}_interactions'] = split_edge_index(data, split).size(1)
    train = split_edge_index(data, 'train')
    stats['density'] = train.size(1) / (num_users * num_items)
    user_deg = torch.bincount(train[0], minlength=num_users)
    item_deg = torch.bincount(train[1], minlength=num_items)
    stats['users_without_train'] = int((user_deg == 0).sum())
    stats['items_without_train'] = int((item_deg == 0).sum())
    stats['modalities'] = {m: int(x.size(1))
                           for m, x in modality_features(data).items()}
    return stats
