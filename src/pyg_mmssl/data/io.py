r"""Readers for the on-disk formats multimodal recommendation datasets ship in.

Each reader returns ``(num_users, num_items, splits, features, sources)``, the
arguments of :func:`pyg_mmssl.data.build_data`, which does the validation that
all formats share. Format-specific problems (malformed JSON, a bad TSV row, a
forbidden pickle class) are reported here, naming the file and the row or key.

Supported layouts (modality features are discovered as ``<modality>_feat.npy``):

* ``mmssl``: ``train.json``, ``val.json``, ``test.json``, each
  ``{"user id": [item ids]}`` (the MMSSL / LATTICE release format).
* ``diffmm``: ``trnMat.pkl``, ``valMat.pkl``, ``tstMat.pkl``, pickled
  ``scipy.sparse`` user x item matrices (the DiffMM / HKUDS release format),
  read through a restricted unpickler that admits numpy and scipy.sparse only.
* ``mmrec``: one ``<name>.inter`` tab-separated file with a header containing
  ``userID``, ``itemID`` and ``x_label`` (0 / 1 / 2 = train / val / test), the
  MMRec toolbox format.
"""
import csv
import io
import json
import os.path as osp
import pickle
from glob import glob
from typing import Dict, List, Tuple

import numpy as np
import scipy.sparse as sp

from pyg_mmssl.data.graph import DataError

FORMATS = ('mmssl', 'diffmm', 'mmrec')
JSON_FILES = {'train': 'train.json', 'val': 'val.json', 'test': 'test.json'}
PICKLE_FILES = {'train': 'trnMat.pkl', 'val': 'valMat.pkl', 'test': 'tstMat.pkl'}
FEATURE_SUFFIX = '_feat.npy'

Parsed = Tuple[int, int, Dict[str, np.ndarray], Dict[str, np.ndarray],
               Dict[str, str]]


def feature_files(root: str) -> Dict[str, str]:
    r"""``{modality: path}`` of every ``<modality>_feat.npy`` in ``root``, sorted
    by modality name."""
    paths = sorted(glob(osp.join(root, f'*{FEATURE_SUFFIX}')))
    return {osp.basename(p)[:-len(FEATURE_SUFFIX)]: p for p in paths}


def read_features(root: str) -> Tuple[Dict[str, np.ndarray], Dict[str, str]]:
    files = feature_files(root)
    if not files:
        raise FileNotFoundError(
            f"no modality features in '{root}': expected at least one "
            f"'<modality>{FEATURE_SUFFIX}' file (e.g. image{FEATURE_SUFFIX})")
    feats = {}
    for name, path in files.items():
        try:
            feats[name] = np.load(path, allow_pickle=False)
        except ValueError as e:
            raise DataError(f"{path}: not a plain numpy array file ({e})") from e
    return feats, dict(files)


def _num_nodes(splits: Dict[str, np.ndarray], feats: Dict[str, np.ndarray],
               sources: Dict[str, str]) -> Tuple[int, int]:
    num_users = max((int(e[0].max()) + 1 for e in splits.values() if e.size),
                    default=0)
    rows = {sources[m]: x.shape[0] for m, x in feats.items()}
    if len(set(rows.values())) > 1:
        raise DataError(f"inconsistent item counts between feature files: "
                        f"{rows}")
    num_items = next(iter(rows.values()))
    return num_users, num_items


# MMSSL (JSON) ##############################################################


def _read_json_split(path: str) -> np.ndarray:
    try:
        with open(path) as f:
            obj = json.load(f)
    except json.JSONDecodeError as e:
        raise DataError(f"{path}: malformed JSON at line {e.lineno}, column "
                        f"{e.colno}: {e.msg}") from e
    if not isinstance(obj, dict):
        raise DataError(f"{path}: expected an object {{\"user id\": [item ids]}}"
                        f", got {type(obj).__name__}")
    users: List[int] = []
    items: List[int] = []
    for key, value in obj.items():
        try:
            user = int(key)
        except ValueError:
            raise DataError(f"{path}: key '{key}' is not an integer user id")
        if not isinstance(value, list) or not all(
                isinstance(v, int) and not isinstance(v, bool) for v in value):
            raise DataError(f"{path}: user '{key}' must map to a list of integer "
                            f"item ids, got {json.dumps(value)[:60]}")
        users.extend([user] * len(value))
        items.extend(value)
    return np.array([users, items], dtype=np.int64).reshape(2, -1)


def read_mmssl(root: str) -> Parsed:
    feats, sources = read_features(root)
    splits = {}
    for split, name in JSON_FILES.items():
        path = osp.join(root, name)
        splits[split] = _read_json_split(path)
        sources[split] = path
    return (*_num_nodes(splits, feats, sources), splits, feats, sources)


# DiffMM (pickled scipy.sparse) ##############################################


class ForbiddenPickleClass(pickle.UnpicklingError):
    pass


class _RestrictedUnpickler(pickle.Unpickler):
    r"""Admits only the numpy and scipy.sparse classes a sparse matrix needs, so
    that loading a pickle cannot run arbitrary code."""
    def find_class(self, module: str, name: str):
        allowed = (module == 'numpy' or module.startswith('numpy.')
                   or module.startswith('scipy.sparse')
                   or (module, name) in {('builtins', 'slice'),
                                         ('builtins', 'tuple'),
                                         ('copyreg', '_reconstructor'),
                                         ('builtins', 'object')})
        if not allowed:
            raise ForbiddenPickleClass(
                f"refusing to load '{module}.{name}': only numpy and "
                f"scipy.sparse objects are allowed")
        return super().find_class(module, name)


def load_sparse_pickle(path: str) -> sp.coo_matrix:
    r"""Loads a pickled ``scipy.sparse`` matrix safely (see
    :class:`_RestrictedUnpickler`)."""
    with open(path, 'rb') as f:
        raw = f.read()
    try:
        obj = _RestrictedUnpickler(io.BytesIO(raw)).load()
    except ForbiddenPickleClass as e:
        raise DataError(f"{path}: {e}") from e
    except Exception as e:  # truncated or corrupted pickles raise many types
        raise DataError(f"{path}: not a readable pickle ({type(e).__name__}: "
                        f"{e})") from e
    if not sp.issparse(obj):
        raise DataError(f"{path}: expected a pickled scipy.sparse matrix, got "
                        f"{type(obj).__name__}")
    return obj.tocoo()


def read_diffmm(root: str) -> Parsed:
    feats, sources = read_features(root)
    splits, shapes = {}, {}
    for split, name in PICKLE_FILES.items():
        path = osp.join(root, name)
        mat = load_sparse_pickle(path)
        mat.sum_duplicates()
        mat.eliminate_zeros()
        splits[split] = np.stack([mat.row, mat.col]).astype(np.int64)
        shapes[path] = mat.shape
        sources[split] = path
    if len(set(shapes.values())) > 1:
        raise DataError(f"inconsistent user x item shapes between files: "
                        f"{shapes}")
    num_users, num_items = next(iter(shapes.values()))
    _, feat_items = _num_nodes(splits, feats, sources)
    if feat_items != num_items:
        raise DataError(f"{next(iter(shapes))}: has {num_items} item columns but "
                        f"the feature files have {feat_items} rows")
    return num_users, num_items, splits, feats, sources


# MMRec (.inter TSV) #########################################################

MMREC_COLUMNS = ('userID', 'itemID', 'x_label')


def read_mmrec(root: str, name: str = None) -> Parsed:
    if name is None:
        candidates = sorted(glob(osp.join(root, '*.inter')))
        if len(candidates) != 1:
            raise FileNotFoundError(
                f"expected exactly one '<name>.inter' file in '{root}', found "
                f"{len(candidates)}; pass the dataset name")
        path = candidates[0]
    else:
        path = osp.join(root, f'{name}.inter')
    feats, sources = read_features(root)
    if not osp.exists(path):
        raise FileNotFoundError(f"missing interaction file '{path}'")
    labels = {0: 'train', 1: 'val', 2: 'test'}
    pairs: Dict[str, List[Tuple[int, int]]] = {s: [] for s in labels.values()}
    with open(path, newline='') as f:
        reader = csv.reader(f, delimiter='\t')
        header = next(reader, None)
        if header is None:
            raise DataError(f"{path}: empty file, expected a header row")
        missing = [c for c in MMREC_COLUMNS if c not in header]
        if missing:
            raise DataError(f"{path}: header lacks column(s) {missing}, expected "
                            f"'userID itemID rating timestamp x_label'")
        cols = [header.index(c) for c in MMREC_COLUMNS]
        for lineno, row in enumerate(reader, start=2):
            if not row:
                continue
            if len(row) != len(header):
                raise DataError(f"{path}, line {lineno}: expected "
                                f"{len(header)} tab-separated fields, got "
                                f"{len(row)}")
            try:
                user, item, label = (int(float(row[c])) for c in cols)
            except ValueError:
                raise DataError(f"{path}, line {lineno}: userID, itemID and "
                                f"x_label must be integers, got "
                                f"{[row[c] for c in cols]}")
            if label not in labels:
                raise DataError(f"{path}, line {lineno}: x_label {label} is not "
                                f"0 (train), 1 (val) or 2 (test)")
            pairs[labels[label]].append((user, item))
    splits = {s: np.array(p, dtype=np.int64).reshape(-1, 2).T
              for s, p in pairs.items()}
    for split in splits:
        sources[split] = f"{path} (x_label={list(labels.values()).index(split)})"
    return (*_num_nodes(splits, feats, sources), splits, feats, sources)


READERS = {'mmssl': read_mmssl, 'diffmm': read_diffmm, 'mmrec': read_mmrec}


def raw_file_names(fmt: str, root: str) -> List[str]:
    r"""The interaction files a format needs (features are discovered)."""
    if fmt == 'mmssl':
        return list(JSON_FILES.values())
    if fmt == 'diffmm':
        return list(PICKLE_FILES.values())
    if fmt == 'mmrec':
        return [osp.basename(p) for p in sorted(glob(osp.join(root, '*.inter')))
                ] or ['<name>.inter']
    raise ValueError(f"unknown format '{fmt}', expected one of {FORMATS}")
