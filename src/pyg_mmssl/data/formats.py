r"""Readers for the on-disk formats multimodal recommendation datasets ship in.

Each reader returns ``(num_users, num_items, splits, features, sources)``, the
arguments of :func:`pyg_mmssl.data.build_data`, which does the validation that
all formats share. Format-specific problems (malformed JSON, a bad TSV row, a
forbidden pickle class) are reported here, naming the file and the row or key.

Supported layouts (modality features are discovered as ``<modality>_feat.npy``;
a folder without any is read with no modalities, for models such as LightGCN
that need none):

* ``mmssl``: ``train.json``, ``val.json``, ``test.json``, each
  ``{"user id": [item ids]}`` (the MMSSL / LATTICE release format).
* ``diffmm``: ``trnMat.pkl``, ``valMat.pkl``, ``tstMat.pkl``, pickled
  ``scipy.sparse`` user x item matrices (the DiffMM / HKUDS release format),
  read through an unpickler that admits only the globals such a matrix of
  numbers needs (see :class:`_RestrictedUnpickler`).
* ``mmrec``: one ``<name>.inter`` tab-separated file with a header containing
  ``userID``, ``itemID`` and ``x_label`` (0 / 1 / 2 = train / val / test), the
  MMRec toolbox format. Of several ``.inter`` files, the one named after the
  folder is read (MMRec's ``<dataset>/<dataset>.inter``), unless a name is
  given.

Ids are written as plain integers (``3``, never ``3.0``, which would be
silently truncated) in ``[0, 2**63)``. Where a count is derived from ids
(users in ``mmssl`` and ``mmrec``; items too without feature files), it is
``max id + 1``, and may be at most ``max(10 x distinct ids, distinct ids +
1000000)``: gaps are fine, but one stray id such as ``4000000000`` must not
make embedding tables of gigabytes. The same bound applies to the shape of a
``diffmm`` matrix.
"""
import codecs
import copyreg
import csv
import importlib
import io
import json
import math
import os
import os.path as osp
import pickle
import re
from glob import escape, glob
from typing import Dict, List, Optional, Tuple

import numpy as np
import scipy.sparse as sp

from pyg_mmssl.data.graph import DataError, check_feature_layout

FORMATS = ('mmssl', 'diffmm', 'mmrec')
JSON_FILES = {'train': 'train.json', 'val': 'val.json', 'test': 'test.json'}
PICKLE_FILES = {'train': 'trnMat.pkl', 'val': 'valMat.pkl', 'test': 'tstMat.pkl'}
FEATURE_SUFFIX = '_feat.npy'

Parsed = Tuple[int, int, Dict[str, np.ndarray], Dict[str, np.ndarray],
               Dict[str, str]]


def feature_files(root: str) -> Dict[str, str]:
    r"""``{modality: path}`` of every ``<modality>_feat.npy`` in ``root``, sorted
    by modality name."""
    paths = sorted(glob(osp.join(escape(root), f'*{FEATURE_SUFFIX}')))
    return {osp.basename(p)[:-len(FEATURE_SUFFIX)]: p for p in paths}


_NPY_HEADERS = {(1, 0): np.lib.format.read_array_header_1_0,
                (2, 0): np.lib.format.read_array_header_2_0}


def read_npy(path: str) -> np.ndarray:
    r"""Loads a ``.npy`` feature matrix, checking its header before any data
    is read (see :func:`~pyg_mmssl.data.graph.check_feature_layout`): never a
    pickle or an ``.npz`` archive, and a truncated file is reported rather
    than allocated at the size its header claims."""
    prefix = np.lib.format.MAGIC_PREFIX
    with open(path, 'rb') as f:
        size = os.fstat(f.fileno()).st_size
        magic = f.read(np.lib.format.MAGIC_LEN)
        if not magic.startswith(prefix):
            raise DataError(f"{path}: empty or truncated .npy file"
                            if prefix.startswith(magic) else
                            f"{path}: not a .npy file")
        version = (magic[-2], magic[-1]) if len(magic) == len(prefix) + 2 \
            else None
        if version not in _NPY_HEADERS:
            raise DataError(f"{path}: empty or truncated .npy file"
                            if version is None else
                            f"{path}: unsupported .npy format version "
                            f"{version[0]}.{version[1]}")
        width = 2 if version == (1, 0) else 4  # of the header length field
        length = f.read(width)
        if len(length) < width or \
                size < f.tell() + int.from_bytes(length, 'little'):
            raise DataError(f"{path}: empty or truncated .npy file")
        f.seek(len(magic))
        try:
            shape, _, dtype = _NPY_HEADERS[version](f)
        except Exception as e:  # ValueError, SyntaxError, tokenize errors
            raise DataError(f"{path}: corrupted .npy header ({type(e).__name__}"
                            f": {e})") from e
        if any(n < 0 for n in shape):
            raise DataError(f"{path}: corrupted .npy header (shape {shape})")
        check_feature_layout(shape, dtype, path)
        need, have = math.prod(shape) * dtype.itemsize, size - f.tell()
        if have < need:
            raise DataError(f"{path}: empty or truncated .npy file (shape "
                            f"{shape} {dtype} needs {need} data bytes, found "
                            f"{have})")
        f.seek(0)
        return np.lib.format.read_array(f, allow_pickle=False)


def read_features(root: str) -> Tuple[Dict[str, np.ndarray], Dict[str, str]]:
    r"""The item features of every ``<modality>_feat.npy`` in ``root`` (none
    at all is fine) and the path of each."""
    files = feature_files(root)
    return ({name: read_npy(path) for name, path in files.items()},
            dict(files))


_SPARE_IDS = 1_000_000
_ID_LIMIT_RULE = 'max(10 x distinct, distinct + 1000000)'


def _id_limit(distinct: int) -> int:
    r"""The most users (or items) ``distinct`` ids may stand for, see the
    module docstring."""
    return max(10 * distinct, distinct + _SPARE_IDS)


def _count_from_ids(splits: Dict[str, np.ndarray], sources: Dict[str, str],
                    row: int, what: str) -> int:
    r"""``max id + 1`` of the users (``row=0``) or items (``row=1``) of all
    splits, within :func:`_id_limit`."""
    ids = {sources[s]: e[row] for s, e in splits.items() if e.size}
    if not ids:
        return 0
    source, top = max(((src, int(x.max())) for src, x in ids.items()),
                      key=lambda t: t[1])
    distinct = np.unique(np.concatenate(list(ids.values()))).size
    limit = _id_limit(distinct)
    if top + 1 > limit:
        raise DataError(f"{source}: {what} id {top} is too large for "
                        f"{distinct} distinct {what} ids: {what}s are counted "
                        f"as max id + 1, and at most {_ID_LIMIT_RULE} = "
                        f"{limit} are allowed; renumber the ids from 0")
    return top + 1


def _feature_rows(feats: Dict[str, np.ndarray],
                  sources: Dict[str, str]) -> Optional[int]:
    r"""The item count the feature files agree on (None without any)."""
    rows = {sources[m]: x.shape[0] for m, x in feats.items()}
    if len(set(rows.values())) > 1:
        raise DataError(f"inconsistent item counts between feature files: "
                        f"{rows}")
    return next(iter(rows.values()), None)


def _num_nodes(splits: Dict[str, np.ndarray], feats: Dict[str, np.ndarray],
               sources: Dict[str, str]) -> Tuple[int, int]:
    num_items = _feature_rows(feats, sources)
    if num_items is None:
        num_items = _count_from_ids(splits, sources, 1, 'item')
    return _count_from_ids(splits, sources, 0, 'user'), num_items


_INTEGER = re.compile(r'[+-]?[0-9]+')


def _parse_int(text: str, what: str, where: str) -> int:
    r"""``text`` as an integer: only a decimal integer literal (surrounding
    whitespace aside), so that ``2.7`` is refused rather than truncated."""
    text = text.strip()
    if not _INTEGER.fullmatch(text):
        raise DataError(f"{where}: {what} {text!r} is not an integer (write "
                        f"ids and labels as plain integers such as 3, not 3.0 "
                        f"or 3e0)")
    if len(text) > 24:  # beyond any id; int() refuses thousands of digits
        raise DataError(f"{where}: {what} {text[:24]}... is too large, "
                        f"expected an id < 2**63")
    return int(text)


def _check_id(value: int, what: str, where: str) -> int:
    if value < 0:
        raise DataError(f"{where}: {what} {value} is negative, expected an id "
                        f">= 0")
    if value >= 2**63:
        raise DataError(f"{where}: {what} {value} is too large, expected an "
                        f"id < 2**63")
    return value


# MMSSL (JSON) ##############################################################


def _unique_keys(pairs: List[Tuple[str, object]], path: str) -> dict:
    # json.load would keep the last of repeated keys, losing interactions.
    seen = set()
    for key, _ in pairs:
        if key in seen:
            raise DataError(f"{path}: key {key!r} appears more than once; give "
                            f"each user one list of item ids")
        seen.add(key)
    return dict(pairs)


def _read_json_split(path: str) -> np.ndarray:
    try:
        with open(path, encoding='utf-8-sig') as f:
            obj = json.load(f, object_pairs_hook=lambda pairs: _unique_keys(
                pairs, path))
    except DataError:
        raise
    except UnicodeDecodeError as e:
        raise DataError(f"{path}: not a UTF-8 text file ({e.reason})") from e
    except json.JSONDecodeError as e:
        raise DataError(f"{path}: malformed JSON at line {e.lineno}, column "
                        f"{e.colno}: {e.msg}") from e
    except RecursionError as e:
        raise DataError(f"{path}: malformed JSON (nested too deeply)") from e
    except ValueError as e:  # e.g. an integer of thousands of digits
        raise DataError(f"{path}: malformed JSON ({e})") from e
    if not isinstance(obj, dict):
        raise DataError(f"{path}: expected an object {{\"user id\": [item ids]}}"
                        f", got {type(obj).__name__}")
    users: List[int] = []
    items: List[int] = []
    keys: Dict[int, str] = {}
    for key, value in obj.items():
        user = _check_id(_parse_int(key, 'key', path), 'key', path)
        if user in keys:
            raise DataError(f"{path}: keys {keys[user]!r} and {key!r} are the "
                            f"same user id {user}; give each user one list of "
                            f"item ids")
        keys[user] = key
        if type(value) is not list or not all(type(v) is int for v in value):
            raise DataError(f"{path}: user {key!r} must map to a list of integer "
                            f"item ids, got {json.dumps(value)[:60]}")
        if value and (min(value) < 0 or max(value) >= 2**63):
            for v in value:
                _check_id(v, 'item id', f"{path}: user {key!r}")
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


ONLY_MATRICES = ("a DiffMM matrix file may only hold scipy.sparse matrices of "
                 "numbers")
# dok and lil are left out: they pickle dicts and arrays of Python objects.
SPARSE_FORMATS = ('coo', 'csr', 'csc', 'bsr', 'dia')


def _numpy_internal(module: str, name: str):
    # numpy 2 renamed numpy.core to numpy._core (the old name warns).
    try:
        return getattr(importlib.import_module(f'numpy._core.{module}'), name)
    except (ImportError, AttributeError):
        return getattr(importlib.import_module(f'numpy.core.{module}'), name)


def _pickle_globals() -> Dict[Tuple[str, str], object]:
    admitted = {}
    for fmt in SPARSE_FORMATS:
        for kind in ('matrix', 'array'):
            cls = getattr(sp, f'{fmt}_{kind}')
            admitted[cls.__module__, cls.__name__] = cls
        # scipy < 1.8 pickled from the public module (the DiffMM releases).
        admitted[f'scipy.sparse.{fmt}', f'{fmt}_matrix'] = getattr(
            sp, f'{fmt}_matrix')
    for module, name in (('multiarray', '_reconstruct'),
                         ('numeric', '_frombuffer')):  # protocol 5
        func = _numpy_internal(module, name)
        admitted[f'numpy.core.{module}', name] = func
        admitted[f'numpy._core.{module}', name] = func
    admitted['numpy', 'ndarray'] = np.ndarray
    admitted['numpy', 'dtype'] = np.dtype
    # Protocols 0 to 2 (Python 2 spellings too): objects are rebuilt with
    # copyreg._reconstructor(cls, object, None), bytes with _codecs.encode.
    for module in ('copyreg', 'copy_reg'):
        admitted[module, '_reconstructor'] = copyreg._reconstructor
    for module in ('builtins', '__builtin__'):
        admitted[module, 'object'] = object
    admitted['_codecs', 'encode'] = codecs.encode
    return admitted


PICKLE_GLOBALS = _pickle_globals()


class _RestrictedUnpickler(pickle.Unpickler):
    r"""Resolves only the exact ``(module, name)`` pairs of
    :obj:`PICKLE_GLOBALS`: the classes of a ``scipy.sparse`` matrix (``coo``,
    ``csr``, ``csc``, ``bsr``, ``dia``) and numpy's array and dtype
    reconstruction. Everything else is refused, without importing anything:
    admitting module prefixes (all of ``numpy.*``) would admit functions that
    ``exec`` a string, and a dotted name (protocol 4 allows
    ``numpy`` / ``lib._utils_impl.os.system``) walks from an admitted module
    to :func:`os.system`."""
    def find_class(self, module: str, name: str):
        try:
            return PICKLE_GLOBALS[module, name]
        except KeyError:
            raise ForbiddenPickleClass(
                f"refusing to load global '{module}.{name}'") from None


def _not_numbers(value) -> Optional[str]:
    r"""What, if anything, in an attribute of an unpickled sparse matrix is
    not numbers: arrays must have a bool, integer, float or complex dtype
    (an object array would carry unpickled objects); tuples are searched."""
    if type(value) is np.ndarray:
        if value.dtype.kind in 'biufc':
            return None
        return f"an array of dtype {value.dtype}"
    if type(value) is tuple:
        return next(filter(None, map(_not_numbers, value)), None)
    if value is None or type(value) in (bool, int):
        return None
    return f"a {type(value).__name__} attribute"


def load_sparse_pickle(path: str) -> sp.coo_matrix:
    r"""Loads a pickled ``scipy.sparse`` matrix of numbers without running
    code: the pickle may only name the globals :class:`_RestrictedUnpickler`
    admits, and the matrix may only hold numeric arrays and plain numbers
    (checked before any of its methods runs)."""
    with open(path, 'rb') as f:
        raw = f.read()
    try:
        obj = _RestrictedUnpickler(io.BytesIO(raw)).load()
    except ForbiddenPickleClass as e:
        raise DataError(f"{path}: {e}: {ONLY_MATRICES}") from e
    except Exception as e:  # truncated or corrupted pickles raise many types
        raise DataError(f"{path}: not a readable pickle ({type(e).__name__}: "
                        f"{e})") from e
    if not sp.issparse(obj):
        raise DataError(f"{path}: expected a pickled scipy.sparse matrix, got "
                        f"{type(obj).__name__}")
    for value in vars(obj).values():
        problem = _not_numbers(value)
        if problem is not None:
            raise DataError(f"{path}: refusing to load {problem}: "
                            f"{ONLY_MATRICES}")
    try:
        return obj.tocoo()
    except Exception as e:  # inconsistent internals raise many types
        reason = (str(e).splitlines() or [''])[0]
        raise DataError(f"{path}: corrupted {type(obj).__name__} "
                        f"({type(e).__name__}: {reason})") from e


def _matrix_pairs(mat: sp.coo_matrix, path: str) -> np.ndarray:
    r"""``[2, E]`` (user, item) pairs of the non-zero entries of a matrix,
    after summing duplicate entries. Checks what a crafted pickle can leave
    inconsistent: the shape, real and finite values, indices in range."""
    try:
        shape, row, col, val = mat.shape, mat.row, mat.col, mat.data
    except AttributeError as e:  # a pickle can leave out any attribute
        raise DataError(f"{path}: corrupted {type(mat).__name__} ({e})") from e
    if len(shape) != 2 or not all(
            isinstance(n, (int, np.integer)) and n >= 0 for n in shape):
        raise DataError(f"{path}: expected a 2-D user x item matrix, got shape "
                        f"{shape}")
    row, col, val = (np.asarray(a) for a in (row, col, val))
    if val.dtype.kind not in 'biuf':
        raise DataError(f"{path}: expected real interaction values, got dtype "
                        f"{val.dtype}")
    if row.dtype.kind not in 'iu' or col.dtype.kind not in 'iu' or not (
            row.ndim == col.ndim == val.ndim == 1
            and row.size == col.size == val.size):
        raise DataError(f"{path}: corrupted matrix: expected as many integer "
                        f"row and column indices as values, got {row.shape} "
                        f"{row.dtype}, {col.shape} {col.dtype} and {val.shape}")
    bad = ~np.isfinite(val)
    if bad.any():
        k = int(bad.nonzero()[0][0])
        raise DataError(f"{path}: entry ({row[k]}, {col[k]}) is {val[k]}, "
                        f"expected a finite value")
    for idx, size, what in ((row, shape[0], 'row'), (col, shape[1], 'column')):
        bad = (idx < 0) | (idx >= size)
        if bad.any():
            k = int(bad.nonzero()[0][0])
            raise DataError(f"{path}: entry #{k} has {what} index {idx[k]}, "
                            f"expected 0 <= index < {size}")
    # float64: scipy.sparse refuses some real dtypes (float16).
    mat = sp.coo_matrix((val.astype(np.float64), (row, col)), shape=shape)
    mat.sum_duplicates()
    mat.eliminate_zeros()
    return np.stack([mat.row, mat.col]).astype(np.int64)


def read_diffmm(root: str) -> Parsed:
    feats, sources = read_features(root)
    splits, shapes = {}, {}
    for split, name in PICKLE_FILES.items():
        path = osp.join(root, name)
        mat = load_sparse_pickle(path)
        splits[split] = _matrix_pairs(mat, path)
        shapes[path] = tuple(int(n) for n in mat.shape)
        sources[split] = path
    if len(set(shapes.values())) > 1:
        raise DataError(f"inconsistent user x item shapes between files: "
                        f"{shapes}")
    path, shape = next(iter(shapes.items()))
    num_users, num_items = shape
    feat_items = _feature_rows(feats, sources)
    if feat_items is not None and feat_items != num_items:
        raise DataError(f"{path}: has {num_items} item columns but the feature "
                        f"files have {feat_items} rows")
    for row, count, what in ((0, num_users, 'user'), (1, num_items, 'item')):
        if row == 1 and feat_items is not None:
            break  # the feature files hold that many items
        distinct = np.unique(np.concatenate(
            [e[row] for e in splits.values()])).size
        if count > _id_limit(distinct):
            raise DataError(f"{path}: shape {shape} has {count} {what}s but "
                            f"only {distinct} distinct {what} ids appear in the "
                            f"splits; at most {_ID_LIMIT_RULE} = "
                            f"{_id_limit(distinct)} are allowed")
    return num_users, num_items, splits, feats, sources


# MMRec (.inter TSV) #########################################################

MMREC_COLUMNS = ('userID', 'itemID', 'x_label')
NAME_FLAGS = {'mmrec': '--inter', 'recbole': '--name'}
MMREC_LABELS = {0: 'train', 1: 'val', 2: 'test'}


def _inter_files(root: str) -> Tuple[List[str], str]:
    r"""The names of the ``.inter`` files in ``root``, and the name MMRec's
    ``<dataset>/<dataset>.inter`` layout gives the folder's own."""
    names = sorted(osp.basename(p)
                   for p in glob(osp.join(escape(root), '*.inter')))
    return names, f'{osp.basename(osp.normpath(root))}.inter'


def mmrec_file(root: str, name: Optional[str] = None,
               fmt: str = 'mmrec') -> str:
    r"""The path of the interaction file to read: ``<name>.inter`` if
    ``name`` is given, else the only ``.inter`` file in ``root`` or, of
    several, the one named after the folder (``fmt`` names the format and
    its flag in the error)."""
    if name is not None:
        return osp.join(root, f'{name}.inter')
    names, own = _inter_files(root)
    if not names:
        raise FileNotFoundError(f"no '<name>.inter' interaction file in "
                                f"'{root}'")
    if len(names) == 1:
        return osp.join(root, names[0])
    if own not in names:
        stem = names[0][:-len('.inter')]
        raise DataError(f"{root}: found {len(names)} '.inter' files "
                        f"({', '.join(names)}) and none is named after the "
                        f"folder ({own}); pass the one to read as name=, e.g. "
                        f"MultimodalRecDataset(root, '{fmt}', name='{stem}')"
                        f" or {NAME_FLAGS[fmt]} {stem} on the command line")
    return osp.join(root, own)


def _read_inter_rows(reader, path: str) -> Dict[str, List[Tuple[int, int]]]:
    header = next(reader, None)
    if header is None:
        raise DataError(f"{path}: empty file, expected a header row")
    missing = [c for c in MMREC_COLUMNS if c not in header]
    if missing:
        raise DataError(f"{path}: header lacks column(s) {missing}, expected "
                        f"'userID itemID rating timestamp x_label'")
    cols = [(header.index(c), c) for c in MMREC_COLUMNS]
    pairs: Dict[str, List[Tuple[int, int]]] = {
        s: [] for s in MMREC_LABELS.values()}
    for row in reader:
        if not row:
            continue
        where = f"{path}, line {reader.line_num}"
        if len(row) != len(header):
            raise DataError(f"{where}: expected {len(header)} tab-separated "
                            f"fields, got {len(row)}")
        user, item, label = (_parse_int(row[i], c, where) for i, c in cols)
        if label not in MMREC_LABELS:
            raise DataError(f"{where}: x_label {label} is not 0 (train), 1 "
                            f"(val) or 2 (test)")
        pairs[MMREC_LABELS[label]].append((_check_id(user, 'userID', where),
                                           _check_id(item, 'itemID', where)))
    if not any(pairs.values()):
        raise DataError(f"{path}: has a header but no interactions")
    return pairs


def read_mmrec(root: str, name: Optional[str] = None) -> Parsed:
    path = mmrec_file(root, name)
    if not osp.exists(path):
        raise FileNotFoundError(f"missing interaction file '{path}'")
    feats, sources = read_features(root)
    with open(path, newline='', encoding='utf-8-sig') as f:
        reader = csv.reader(f, delimiter='\t')
        try:
            pairs = _read_inter_rows(reader, path)
        except UnicodeDecodeError as e:
            raise DataError(f"{path}: not a UTF-8 text file ({e.reason})") from e
        except csv.Error as e:  # a NUL byte, a field over the size limit
            raise DataError(f"{path}, line {reader.line_num}: {e}") from e
    splits = {s: np.array(p, dtype=np.int64).reshape(-1, 2).T
              for s, p in pairs.items()}
    for label, split in MMREC_LABELS.items():
        sources[split] = f"{path} (x_label={label})"
    return (*_num_nodes(splits, feats, sources), splits, feats, sources)


READERS = {'mmssl': read_mmssl, 'diffmm': read_diffmm, 'mmrec': read_mmrec}


def raw_file_names(fmt: str, root: str) -> List[str]:
    r"""The interaction files a format needs (features are discovered)."""
    if fmt == 'mmssl':
        return list(JSON_FILES.values())
    if fmt == 'diffmm':
        return list(PICKLE_FILES.values())
    if fmt == 'mmrec':  # the file mmrec_file picks, where it can tell
        names, own = _inter_files(root)
        return [own] if own in names else names or ['<name>.inter']
    raise ValueError(f"unknown format '{fmt}', expected one of {FORMATS}")
