r"""Readers for RecBole's atomic files and for the GroupLens MovieLens-100K
files, both as implicit feedback split per user.

* ``recbole``: ``<name>.inter`` with ``user_id`` and ``item_id`` fields (and
  optionally ``rating`` and ``timestamp``), optionally ``<name>.item`` with
  ``item_id`` and item fields (see :mod:`pyg_mmssl.data.atomic`). Other
  atomic files (``.user``, ``.kg``, ``.link``) are not read.
* ``grouplens``: ``u.data`` (tab-separated ``user item rating timestamp``)
  and optionally ``u.item`` (``|``-separated, latin-1: id, title, release
  date, video release date, IMDb URL and 19 genre flags), as GroupLens
  ships MovieLens-100K. They are read as the atomic fields ``user_id``,
  ``item_id``, ``rating``, ``timestamp`` and ``item_id``,
  ``movie_title`` (a ``token``), ``release_date`` (a ``token``), ``genre``
  (a ``float_seq`` of the 19 flags).

Users and items are tokens (strings). They become ids ``0, 1, ...`` in
sorted order (by number when every token is an integer): users of the
interaction file, items of the interaction file and of the item file
together, all before a rating threshold drops anything, so that the ids
(and features aligned with them) do not depend on the split options. The
tokens of every id are kept with the split (:func:`read_id_tokens`).

Interactions with a rating below ``rating_threshold`` are dropped, repeated
``(user, item)`` pairs are kept once (the earliest, for a temporal split),
and each user's interactions are split as :mod:`pyg_mmssl.data.split`
describes; the split is written into ``<root>/pyg_mmssl_splits/<key>``
and read back on later runs.

Item modalities, one ``[num_items, d]`` matrix each, named after their
field or file:

* a ``float_seq`` field: its vectors (all of one length; an item without
  a value or without a record in the item file gets zeros);
* a ``token_seq`` or ``token`` field: multi-hot over its sorted
  vocabulary;
* a ``float`` field: one column;
* ``<modality>_feat.npy`` in the folder (rows in item id order, as
  ``pyg-mmssl encode`` writes them): its matrix. A file named after an item
  field replaces that field: ``movie_title_feat.npy`` holds encoded titles
  in place of a multi-hot of their words.

By default every ``float_seq`` and ``token_seq`` field is a modality;
``item_fields`` names the fields to use instead.
"""
import logging
import os.path as osp
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

from pyg_mmssl.data.atomic import (AtomicFile, numbers, parse_records,
                                   read_atomic, sorted_tokens, tokens)
from pyg_mmssl.data.formats import Parsed, mmrec_file, read_features
from pyg_mmssl.data.graph import DataError
from pyg_mmssl.data.split import (DEFAULT_RATIOS, check_split_options,
                                  read_split, read_split_meta, split_key,
                                  split_per_user, write_split)
from pyg_mmssl.files import file_sha256

log = logging.getLogger(__name__)

USER_FIELD, ITEM_FIELD = 'user_id', 'item_id'
RATING_FIELD, TIME_FIELD = 'rating', 'timestamp'
SPLIT_DIR = 'pyg_mmssl_splits'
GROUPLENS_FILES = ('u.data', 'u.item')
GROUPLENS_GENRES = 19
# Multi-hot features larger than this (floats) are refused: 512 MB.
MAX_MULTI_HOT = 1 << 27


def recbole_files(root: str, name: Optional[str] = None
                  ) -> Tuple[str, Optional[str]]:
    r"""The paths of ``<name>.inter`` and of ``<name>.item`` (:obj:`None`
    when absent); without ``name``, the folder's only ``.inter`` file or the
    one named after the folder."""
    inter = mmrec_file(root, name, fmt='recbole')
    if not osp.exists(inter):
        raise FileNotFoundError(f"missing interaction file '{inter}'")
    item = inter[:-len('.inter')] + '.item'
    return inter, item if osp.exists(item) else None


def read_grouplens_files(root: str) -> Tuple[AtomicFile, Optional[AtomicFile]]:
    r"""``u.data`` and ``u.item`` (:obj:`None` when absent) as atomic
    files (see the module docstring)."""
    path = osp.join(root, 'u.data')
    if not osp.exists(path):
        raise FileNotFoundError(f"missing interaction file '{path}'")
    types = {USER_FIELD: 'token', ITEM_FIELD: 'token', RATING_FIELD: 'float',
             TIME_FIELD: 'float'}
    inter = _read_separated(path, types, '\t', 'utf-8')
    path = osp.join(root, 'u.item')
    if not osp.exists(path):
        return inter, None
    types = {ITEM_FIELD: 'token', 'movie_title': 'token',
             'release_date': 'token', 'video_release_date': 'token',
             'imdb_url': 'token', **{f'genre{k}': 'float'
                                     for k in range(GROUPLENS_GENRES)}}
    raw = _read_separated(path, types, '|', 'latin-1')
    genres = np.stack([numbers(raw, f'genre{k}')
                       for k in range(GROUPLENS_GENRES)], axis=1)
    bad = ~np.isin(genres, (0, 1)).all(axis=1)
    if bad.any():
        raise DataError(f"{raw.where(int(bad.nonzero()[0][0]))}: genre flags "
                        f"must be 0 or 1")
    item = AtomicFile(path, {ITEM_FIELD: 'token', 'movie_title': 'token',
                             'release_date': 'token', 'genre': 'float_seq'},
                      {ITEM_FIELD: raw.columns[ITEM_FIELD],
                       'movie_title': raw.columns['movie_title'],
                       'release_date': raw.columns['release_date'],
                       'genre': list(genres)}, raw.lines)
    return inter, item


def _read_separated(path: str, types: Dict[str, str], sep: str,
                    encoding: str) -> AtomicFile:
    r"""A header-less file of ``sep``-separated fields of ``types``."""
    try:
        with open(path, encoding=encoding, newline='') as f:
            records = f.read().splitlines()
    except UnicodeDecodeError as e:
        raise DataError(f"{path}: not a {encoding} text file ({e.reason})"
                        ) from e
    parsed = parse_records(records, types, path, sep=sep)
    if not len(parsed):
        raise DataError(f"{path}: has no records")
    return parsed


def id_tokens(inter: AtomicFile, item: Optional[AtomicFile]
              ) -> Tuple[List[str], List[str]]:
    r"""The tokens of user ids and of item ids, in id order (see the module
    docstring)."""
    items = tokens(inter, ITEM_FIELD)
    if item is not None:
        items = items + tokens(item, ITEM_FIELD)
    return sorted_tokens(tokens(inter, USER_FIELD)), sorted_tokens(items)


def _ids(values: List[str], order: List[str]) -> np.ndarray:
    index = {t: k for k, t in enumerate(order)}
    return np.fromiter((index[v] for v in values), dtype=np.int64,
                       count=len(values))


def item_rows(item: AtomicFile, items: List[str]) -> np.ndarray:
    r"""The item id of each record of the item file; an item given twice is
    an error naming both lines."""
    ids = _ids(tokens(item, ITEM_FIELD), items)
    first: Dict[int, int] = {}
    for row, i in enumerate(ids.tolist()):
        if i in first:
            raise DataError(f"{item.where(row)}: item '{items[i]}' already has "
                            f"a record at line {item.lines[first[i]]}")
        first[i] = row
    return ids


def field_features(item: AtomicFile, field: str, rows: np.ndarray,
                   num_items: int) -> np.ndarray:
    r"""The ``[num_items, d]`` float32 features of an item field (see the
    module docstring); ``rows`` holds the item id of each record."""
    kind, values = item.types[field], item.columns[field]
    where = f"{item.path}, field '{field}'"
    if kind == 'float':
        x = np.zeros((num_items, 1), dtype=np.float32)
        x[rows, 0] = numbers(item, field)
        return x
    if kind == 'float_seq':
        dims = {v.size for v in values if v.size}
        if len(dims) > 1:
            dim = len(next(v for v in values if v.size))
            row = next(k for k, v in enumerate(values) if v.size not in (0, dim))
            raise DataError(f"{item.where(row)}: field '{field}' has "
                            f"{values[row].size} values, expected {dim} as in "
                            f"its first record")
        x = np.zeros((num_items, dims.pop() if dims else 0), dtype=np.float32)
        for record, (row, v) in enumerate(zip(rows.tolist(), values)):
            if not np.isfinite(v).all():
                raise DataError(f"{item.where(record)}: field '{field}' holds "
                                f"NaN or Inf")
            if v.size:
                x[row] = v
        return x
    lists = [[v] if kind == 'token' else v for v in values]
    vocab = sorted({t for v in lists for t in v if t})
    if len(vocab) * num_items > MAX_MULTI_HOT:
        raise DataError(f"{where}: a multi-hot of {len(vocab)} distinct tokens "
                        f"x {num_items} items is too large; leave the field "
                        f"out (--item-fields) or encode it into "
                        f"{field}_feat.npy (pyg-mmssl encode text)")
    column = {t: k for k, t in enumerate(vocab)}
    x = np.zeros((num_items, len(vocab)), dtype=np.float32)
    for row, v in zip(rows.tolist(), lists):
        x[row, [column[t] for t in v if t]] = 1
    return x


def item_features(root: str, item: Optional[AtomicFile], items: List[str],
                  item_fields: Optional[Sequence[str]]
                  ) -> Tuple[Dict[str, np.ndarray], Dict[str, str]]:
    r"""The modalities of the items (see the module docstring), sorted by
    name, and the source of each."""
    feats, sources = read_features(root)
    if item_fields is None:
        fields = [] if item is None else [
            f for f, kind in item.types.items()
            if kind in ('float_seq', 'token_seq') and f != ITEM_FIELD
            and f not in feats]
    else:
        fields = list(dict.fromkeys(item_fields))
        available = [] if item is None else [f for f in item.types
                                              if f != ITEM_FIELD]
        for f in fields:
            if f not in available:
                where = item.path if item is not None else \
                    f"{root}: no item file, so"
                raise DataError(f"{where}: no item field '{f}' (--item-fields;"
                                f" item fields: {available})")
            if f in feats:
                raise DataError(f"{sources[f]}: replaces item field '{f}'; "
                                f"leave '{f}' out of --item-fields or remove "
                                f"the file")
    if fields:
        rows = item_rows(item, items)
        for f in fields:
            x = field_features(item, f, rows, len(items))
            if x.shape[1] == 0:
                if item_fields is not None:
                    raise DataError(f"{item.path}: item field '{f}' has no "
                                    f"values")
                log.warning("%s: item field '%s' has no values; left out",
                            item.path, f)
                continue
            feats[f] = x
            sources[f] = f"{item.path}, field '{f}'"
    order = sorted(feats)
    return {m: feats[m] for m in order}, sources


def read_interactions(inter: AtomicFile, users: List[str], items: List[str],
                      split: str, rating_threshold: Optional[float]
                      ) -> Tuple[np.ndarray, np.ndarray, Optional[np.ndarray]]:
    r"""User ids, item ids and (for a temporal split) timestamps of the
    distinct interactions kept by the threshold."""
    user = _ids(tokens(inter, USER_FIELD), users)
    item = _ids(tokens(inter, ITEM_FIELD), items)
    time = None
    if split == 'temporal':
        if TIME_FIELD not in inter.types:
            raise DataError(f"{inter.path}: a temporal split (--split "
                            f"temporal) needs a '{TIME_FIELD}' field")
        time = numbers(inter, TIME_FIELD)
    if rating_threshold is not None:
        if RATING_FIELD not in inter.types:
            raise DataError(f"{inter.path}: a rating threshold "
                            f"(--rating-threshold) needs a '{RATING_FIELD}' "
                            f"field")
        keep = numbers(inter, RATING_FIELD) >= rating_threshold
        user, item = user[keep], item[keep]
        time = time[keep] if time is not None else None
        if not keep.any():
            raise DataError(f"{inter.path}: no interaction has a rating >= "
                            f"{rating_threshold:g}")
    # The first of repeated pairs: the earliest for a temporal split.
    order = np.lexsort((np.arange(user.size),
                        time if time is not None else np.zeros(user.size),
                        item, user))
    key = user[order] * len(items) + item[order]
    first = np.r_[True, key[1:] != key[:-1]]
    if not first.all():
        log.warning("%s: removed %d repeated (user, item) interaction(s)",
                    inter.path, int((~first).sum()))
    keep = np.sort(order[first])
    return user[keep], item[keep], None if time is None else time[keep]


def split_options(name: str, split: str, split_seed: int,
                  rating_threshold: Optional[float],
                  ratios: Sequence[float]) -> Dict[str, object]:
    return {'name': name, 'split': split,
            'seed': split_seed if split == 'random' else None,
            'ratios': [float(r) for r in ratios],
            'rating_threshold': None if rating_threshold is None
            else float(rating_threshold)}


def load_or_split(inter: AtomicFile, users: List[str], items: List[str],
                  folder: str, options: Dict[str, object]
                  ) -> Dict[str, np.ndarray]:
    r"""The split in ``folder`` if there is one made from this interaction
    file with these options (another is an error), else a new split written
    there."""
    digest = file_sha256(inter.path)
    meta = read_split_meta(folder)
    where = osp.join(folder, 'split.json')
    if meta is not None:
        for key, value in (('options', options), ('inter_sha256', digest),
                           ('users', users), ('items', items)):
            if meta.get(key) != value:
                what = {'options': f"options {meta.get('options')}, not "
                        f"{options}",
                        'inter_sha256': f"another version of {inter.path}",
                        'users': "other user tokens",
                        'items': "other item tokens"}[key]
                raise DataError(f"{where}: this split was made from {what}; "
                                f"delete '{folder}' to split again")
        return read_split(folder)
    user, item, time = read_interactions(
        inter, users, items, options['split'], options['rating_threshold'])
    splits = split_per_user(user, item, time, options['split'],
                            options['seed'] or 0, options['ratios'])
    write_split(folder, splits, {'options': options, 'inter':
                                 osp.basename(inter.path),
                                 'inter_sha256': digest, 'users': users,
                                 'items': items})
    log.info("wrote the split to %s", folder)
    return splits


def read_recbole(root: str, name: Optional[str] = None, split: str = 'random',
                 split_seed: int = 0, rating_threshold: Optional[float] = None,
                 item_fields: Optional[Sequence[str]] = None,
                 ratios: Sequence[float] = DEFAULT_RATIOS,
                 split_root: Optional[str] = None) -> Parsed:
    r"""Reads a folder of RecBole atomic files (see the module docstring).

    Args:
        root (str): The folder.
        name (str, optional): Reads ``<name>.inter`` and ``<name>.item``.
            (default: :obj:`None`, the only ``.inter`` file, else the one
            named after the folder)
        split (str): ``"random"`` or ``"temporal"`` (see
            :mod:`pyg_mmssl.data.split`). (default: :obj:`"random"`)
        split_seed (int): Seed of a random split. (default: :obj:`0`)
        rating_threshold (float, optional): Keep interactions rated at
            least this. (default: :obj:`None`, all)
        item_fields (list, optional): Item fields that become modalities.
            (default: :obj:`None`, every ``float_seq`` and ``token_seq``
            field)
        ratios (tuple): Train, validation and test ratios. (default:
            :obj:`(0.8, 0.1, 0.1)`)
        split_root (str, optional): Where split folders go. (default:
            :obj:`None`, ``<root>/pyg_mmssl_splits``)
    """
    inter_path, item_path = recbole_files(root, name)
    inter = read_atomic(inter_path, required=(USER_FIELD, ITEM_FIELD))
    item = None if item_path is None else read_atomic(
        item_path, required=(ITEM_FIELD, ))
    name = osp.basename(inter_path)[:-len('.inter')]
    return _read(root, inter, item, name, split, split_seed,
                 rating_threshold, item_fields, ratios, split_root)


def read_grouplens(root: str, split: str = 'random', split_seed: int = 0,
                   rating_threshold: Optional[float] = None,
                   item_fields: Optional[Sequence[str]] = None,
                   ratios: Sequence[float] = DEFAULT_RATIOS,
                   split_root: Optional[str] = None) -> Parsed:
    r"""Reads a GroupLens MovieLens-100K folder (``u.data``, ``u.item``; see
    the module docstring), with the arguments of :func:`read_recbole`."""
    inter, item = read_grouplens_files(root)
    return _read(root, inter, item, 'u', split, split_seed, rating_threshold,
                 item_fields, ratios, split_root)


def _read(root, inter, item, name, split, split_seed, rating_threshold,
          item_fields, ratios, split_root) -> Parsed:
    check_split_options(split, ratios)
    if not len(inter):
        raise DataError(f"{inter.path}: has a header but no interactions")
    users, items = id_tokens(inter, item)
    feats, sources = item_features(root, item, items, item_fields)
    options = split_options(name, split, split_seed, rating_threshold, ratios)
    folder = osp.join(split_root or osp.join(root, SPLIT_DIR),
                      split_key(name, split, split_seed, rating_threshold,
                                ratios))
    splits = load_or_split(inter, users, items, folder, options)
    for s in splits:
        sources[s] = f"{inter.path} ({s} split, {folder})"
    return len(users), len(items), splits, feats, sources


def read_id_tokens(folder: str) -> Tuple[List[str], List[str]]:
    r"""The user and item tokens of every id of a split folder, to map ids
    (e.g. of ``pyg-mmssl recommend``) back to the data's tokens."""
    meta = read_split_meta(folder)
    if meta is None:
        raise FileNotFoundError(f"no split in '{folder}'")
    return list(meta['users']), list(meta['items'])
