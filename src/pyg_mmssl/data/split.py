r"""Splitting implicit feedback per user into train / validation / test, and
the split files that keep a split fixed between runs.

Each user's interactions are split on their own, in the ratios
:math:`(r_{train}, r_{val}, r_{test})` (default 8:1:1). A user with
:math:`n` interactions gets

.. math::
    n_{test} = \max(1, \lfloor r_{test} \, n \rfloor), \quad
    n_{val} = \max(1, \lfloor r_{val} \, n \rfloor), \quad
    n_{train} = n - n_{val} - n_{test},

when :math:`n \geq 3` (with a ratio of 0, that part is empty); a user with
fewer than 3 interactions keeps them all in training. Which interactions
go where:

* ``"random"``: the user's interactions, ordered by item id, are shuffled by
  a generator seeded with ``(seed, user id)``, so one user's split does not
  depend on the other users;
* ``"temporal"``: ordered by timestamp (then item id), the oldest are
  training, the newest test.

A split is written once into a folder of its own (``mmssl`` JSON layout:
``train.json``, ``val.json``, ``test.json``, each ``{"user id": [item
ids]}``, and ``split.json`` with the options, the SHA-256 of the
interaction file and the token of every user and item id) and read back
on later runs, so that runs compare on the same split.
"""
import json
import os
import os.path as osp
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

from pyg_mmssl.data.formats import JSON_FILES, _read_json_split
from pyg_mmssl.data.graph import DataError
from pyg_mmssl.files import atomic_write_json

SPLIT_KINDS = ('random', 'temporal')
DEFAULT_RATIOS = (0.8, 0.1, 0.1)
MIN_SPLIT_INTERACTIONS = 3
SPLIT_META = 'split.json'
SPLIT_MARK = 'pyg_mmssl split'
SPLIT_VERSION = 1


def check_split_options(split: str, ratios: Sequence[float]) -> None:
    if split not in SPLIT_KINDS:
        raise ValueError(f"unknown split '{split}', expected one of "
                         f"{SPLIT_KINDS}")
    if len(ratios) != 3 or min(ratios) < 0 or ratios[0] <= 0 or \
            abs(sum(ratios) - 1) > 1e-6:
        raise ValueError(f"split ratios must be three non-negative numbers "
                         f"(train > 0) that sum to 1, got {tuple(ratios)}")


def split_sizes(n: int, ratios: Sequence[float] = DEFAULT_RATIOS
                ) -> Tuple[int, int, int]:
    r"""``(n_train, n_val, n_test)`` of a user with ``n`` interactions (see
    the module docstring)."""
    if n < MIN_SPLIT_INTERACTIONS:
        return n, 0, 0
    val, test = (0 if r == 0 else max(1, int(r * n)) for r in ratios[1:])
    return n - val - test, val, test


def split_per_user(user: np.ndarray, item: np.ndarray,
                   timestamp: Optional[np.ndarray] = None, split: str = 'random',
                   seed: int = 0, ratios: Sequence[float] = DEFAULT_RATIOS
                   ) -> Dict[str, np.ndarray]:
    r"""Splits the distinct ``(user, item)`` pairs of each user (see the
    module docstring) into ``{'train', 'val', 'test'}`` ``[2, E]`` arrays.

    Args:
        user (np.ndarray): User id of each interaction.
        item (np.ndarray): Item id of each interaction.
        timestamp (np.ndarray, optional): Time of each interaction, needed
            by ``split="temporal"``. (default: :obj:`None`)
        split (str): ``"random"`` or ``"temporal"``. (default:
            :obj:`"random"`)
        seed (int): Seed of the random split. (default: :obj:`0`)
        ratios (tuple): Train, validation and test ratios. (default:
            :obj:`(0.8, 0.1, 0.1)`)
    """
    check_split_options(split, ratios)
    if split == 'temporal':
        if timestamp is None:
            raise ValueError("a temporal split needs a timestamp per "
                             "interaction")
        order = np.lexsort((item, timestamp, user))
    else:
        order = np.lexsort((item, user))
    user, item = user[order], item[order]
    bounds = np.flatnonzero(np.diff(user)) + 1
    parts: Dict[str, List[np.ndarray]] = {'train': [], 'val': [], 'test': []}
    for lo, hi in zip(np.r_[0, bounds], np.r_[bounds, user.size]):
        items = item[lo:hi]
        if split == 'random':
            rng = np.random.default_rng([seed, int(user[lo])])
            items = items[rng.permutation(items.size)]
        n_train, n_val, _ = split_sizes(items.size, ratios)
        for name, chunk in (('train', items[:n_train]),
                            ('val', items[n_train:n_train + n_val]),
                            ('test', items[n_train + n_val:])):
            parts[name].append(np.stack([np.full_like(chunk, user[lo]),
                                         chunk]))
    return {name: np.concatenate(p, axis=1) if p else
            np.empty((2, 0), dtype=np.int64) for name, p in parts.items()}


def split_key(name: str, split: str, seed: int,
              rating_threshold: Optional[float],
              ratios: Sequence[float] = DEFAULT_RATIOS) -> str:
    r"""The folder name of a split: the data's name and every option that
    changes the split (the seed only for a random split)."""
    key = f"{name}.{split}-{'-'.join(f'{100 * r:g}' for r in ratios)}"
    if split == 'random':
        key += f'.seed{seed}'
    if rating_threshold is not None:
        key += f'.min{rating_threshold:g}'
    return key


def _to_json(pairs: np.ndarray) -> Dict[str, List[int]]:
    out: Dict[str, List[int]] = {}
    for u, i in pairs.T.tolist():
        out.setdefault(str(u), []).append(i)
    return out


def write_split(folder: str, splits: Dict[str, np.ndarray],
                meta: Dict[str, object]) -> None:
    r"""Writes a split into ``folder`` (atomically, ``split.json`` last, so a
    folder holding it holds a whole split)."""
    os.makedirs(folder, exist_ok=True)
    for split, name in JSON_FILES.items():
        atomic_write_json(_to_json(splits[split]), osp.join(folder, name))
    atomic_write_json({'format': SPLIT_MARK, 'version': SPLIT_VERSION,
                       **meta}, osp.join(folder, SPLIT_META))


def read_split_meta(folder: str) -> Optional[Dict[str, object]]:
    r"""The ``split.json`` of a split folder (:obj:`None` if there is none
    yet); a file that is not one is an error."""
    path = osp.join(folder, SPLIT_META)
    if not osp.exists(path):
        return None
    try:
        with open(path, encoding='utf-8') as f:
            meta = json.load(f)
    except (ValueError, UnicodeDecodeError) as e:
        raise DataError(f"{path}: not a pyg_mmssl split file ({e}); delete "
                        f"the folder to split again") from e
    if not isinstance(meta, dict) or meta.get('format') != SPLIT_MARK or \
            meta.get('version') != SPLIT_VERSION:
        raise DataError(f"{path}: not a pyg_mmssl split file (version "
                        f"{SPLIT_VERSION}); delete the folder to split again")
    return meta


def read_split(folder: str) -> Dict[str, np.ndarray]:
    r"""The ``{'train', 'val', 'test'}`` pairs of a split folder."""
    return {split: _read_json_split(osp.join(folder, name))
            for split, name in JSON_FILES.items()}
