r"""Property-based tests of the three loaders on malformed input: whatever the
files hold, a loader either builds a valid graph or raises a
:class:`DataError` whose message is one line. A missing file may raise
:class:`FileNotFoundError`; no other exception type may escape.

The examples are derived from a fixed seed (``derandomize=True``), so a run
is reproducible; a failure prints the files that caused it.
"""
import io
import json
import os.path as osp
import pickle
import tempfile
from typing import Dict, Optional

import numpy as np
import scipy.sparse as sp
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from pyg_mmssl.data import DataError, build_data, split_edge_index
from pyg_mmssl.data.graph import SPLITS
from pyg_mmssl.data.formats import READERS

Files = Dict[str, Optional[bytes]]  # None: the file is absent

NUM_USERS, NUM_ITEMS = 4, 5
PAIRS = {'train': [(0, 0), (0, 1), (1, 2), (2, 3), (3, 4), (3, 0)],
         'val': [(0, 2), (1, 3)],
         'test': [(2, 4), (3, 1)]}
PICKLES = {'train': 'trnMat.pkl', 'val': 'valMat.pkl', 'test': 'tstMat.pkl'}
MMREC_HEADER = 'userID\titemID\trating\ttimestamp\tx_label'

EXAMPLES = settings(max_examples=80, deadline=None, derandomize=True,
                    database=None,
                    suppress_health_check=[HealthCheck.too_slow,
                                           HealthCheck.data_too_large])


def npy(x: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, x, allow_pickle=True)
    return buf.getvalue()


def sparse_pickle(pairs, shape=(NUM_USERS, NUM_ITEMS)) -> bytes:
    u, i = zip(*pairs)
    return pickle.dumps(sp.coo_matrix((np.ones(len(u)), (u, i)), shape=shape))


def json_pairs(split: str) -> list:
    r"""``("user id", [item ids])`` pairs of a split, as in the JSON files."""
    obj: Dict[str, list] = {}
    for u, i in PAIRS[split]:
        obj.setdefault(str(u), []).append(i)
    return list(obj.items())


def valid_files(fmt: str) -> Files:
    files = {'image_feat.npy': npy(np.arange(NUM_ITEMS * 4, dtype=np.float32)
                                   .reshape(NUM_ITEMS, 4))}
    if fmt == 'mmssl':
        for split in PAIRS:
            files[f'{split}.json'] = json.dumps(dict(json_pairs(split))).encode()
    elif fmt == 'diffmm':
        for split, pairs in PAIRS.items():
            files[PICKLES[split]] = sparse_pickle(pairs)
    else:
        rows = [MMREC_HEADER] + [
            f'{u}\t{i}\t1\t100\t{label}'
            for label, pairs in enumerate(PAIRS.values()) for u, i in pairs]
        files['toy.inter'] = ('\n'.join(rows) + '\n').encode()
    return files


def load(fmt: str, files: Files):
    r"""Reads ``files`` with the ``fmt`` reader and checks the outcome: a
    valid graph (returned) or a one-line :class:`DataError` (None)."""
    with tempfile.TemporaryDirectory() as root:
        for name, raw in files.items():
            if raw is not None:
                with open(osp.join(root, name), 'wb') as f:
                    f.write(raw)
        try:
            data = build_data(*READERS[fmt](root))
        except DataError as e:
            assert str(e) and '\n' not in str(e), repr(str(e))
            return None
        except FileNotFoundError:
            assert None in files.values()
            return None
    num_users, num_items = data['user'].num_nodes, data['item'].num_nodes
    assert num_users > 0 and num_items > 0
    # Counts derived from ids (or a matrix shape) stay near the ids in use.
    ids = torch.cat([split_edge_index(data, s) for s in SPLITS], dim=1)
    for row, count in ((0, num_users), (1, num_items)):
        if row == 1 and data.modalities:
            break  # the feature files hold that many items
        distinct = ids[row].unique().numel()
        assert count <= max(10 * distinct, distinct + 1_000_000)
    for split in SPLITS:
        edge_index = split_edge_index(data, split)
        assert edge_index.dtype == torch.long and edge_index.size(0) == 2
        assert edge_index.size(1) > 0
        assert 0 <= int(edge_index[0].min()) <= int(edge_index[0].max()) \
            < num_users
        assert 0 <= int(edge_index[1].min()) <= int(edge_index[1].max()) \
            < num_items
    assert sorted(data.modalities) == sorted(
        name[:-len('_feat.npy')] for name, raw in files.items()
        if name.endswith('_feat.npy') and raw is not None)
    for m in data.modalities:
        x = data['item'][m]
        assert x.dtype == torch.float32 and x.dim() == 2
        assert x.size(0) == num_items and x.size(1) > 0
        assert bool(torch.isfinite(x).all())
    return data


# Byte-level damage to any one file of a valid dataset ######################


@st.composite
def damaged(draw, fmt: str) -> Files:
    files = valid_files(fmt)
    name = draw(st.sampled_from(sorted(files)))
    raw = files[name]
    kind = draw(st.sampled_from(
        ['truncate', 'flip', 'insert', 'replace', 'delete']))
    if kind == 'truncate':
        raw = raw[:draw(st.integers(0, len(raw) - 1))]
    elif kind == 'flip':
        buf = bytearray(raw)
        for pos, mask in draw(st.lists(st.tuples(
                st.integers(0, len(raw) - 1), st.integers(1, 255)),
                min_size=1, max_size=4)):
            buf[pos] ^= mask
        raw = bytes(buf)
    elif kind == 'insert':
        pos = draw(st.integers(0, len(raw)))
        raw = raw[:pos] + draw(st.binary(min_size=1, max_size=16)) + raw[pos:]
    elif kind == 'replace':
        raw = draw(st.binary(max_size=64))
    else:
        raw = None
    files[name] = raw
    return files


# Odd but well-formed content, per format ###################################

ODD_INTS = st.sampled_from([0, 1, 3, 4, 5, -1, 4_000_000_000, 2**63 - 1,
                            2**63, 2**70])
JSON_LEAVES = st.one_of(st.none(), st.booleans(), st.integers(0, 6),
                        ODD_INTS, st.floats(), st.text(max_size=3))
JSON_VALUES = st.recursive(JSON_LEAVES, lambda inner: st.one_of(
    st.lists(inner, max_size=3),
    st.dictionaries(st.text(max_size=3), inner, max_size=3)), max_leaves=8)
USER_KEYS = st.one_of(st.integers(0, 5).map(str), ODD_INTS.map(str),
                      st.sampled_from(['01', ' 1', '1.0', '', 'x', '\u0661',
                                       'true']),
                      st.text(max_size=3))


@st.composite
def odd_json(draw) -> Files:
    files = valid_files('mmssl')
    split = draw(st.sampled_from(SPLITS))
    if draw(st.integers(0, 4)) == 0:
        files[f'{split}.json'] = json.dumps(draw(JSON_VALUES)).encode()
        return files
    # A few edits of the valid (key, items) pairs; pairs, not a dict, so
    # that keys may repeat.
    pairs = json_pairs(split)
    for _ in range(draw(st.integers(1, 3))):
        k = draw(st.integers(0, len(pairs) - 1))
        key, items = pairs[k]
        edit = draw(st.sampled_from(['key', 'item', 'value', 'pair']))
        if edit == 'key':
            pairs[k] = (draw(USER_KEYS), items)
        elif edit == 'item' and isinstance(items, list):
            pairs[k] = (key, items + [draw(st.one_of(ODD_INTS, JSON_LEAVES))])
        elif edit == 'value':
            pairs[k] = (key, draw(JSON_VALUES))
        else:
            pairs.append((draw(USER_KEYS), draw(st.lists(
                st.one_of(st.integers(0, 6), ODD_INTS), max_size=3))))
    files[f'{split}.json'] = ('{' + ', '.join(
        f'{json.dumps(k)}: {json.dumps(v)}' for k, v in pairs) + '}').encode()
    return files


MMREC_FIELDS = st.one_of(
    st.integers(0, 6).map(str), ODD_INTS.map(str),
    st.sampled_from(['2.7', '3.0', '1e3', 'inf', 'nan', '', ' 3', '\u0662',
                     '"', '"1\n2"', '0x1', '1_0']),
    st.text(max_size=3))
MMREC_HEADERS = st.one_of(
    st.permutations(['userID', 'itemID', 'x_label', 'rating']).map('\t'.join),
    st.lists(MMREC_FIELDS, max_size=5).map('\t'.join))


@st.composite
def odd_tsv(draw) -> Files:
    files = valid_files('mmrec')
    lines = files['toy.inter'].decode().splitlines()
    rows = [line.split('\t') for line in lines[1:]]
    for _ in range(draw(st.integers(1, 3))):
        edit = draw(st.sampled_from(['field', 'field', 'row', 'drop', 'header']))
        k = draw(st.integers(0, len(rows) - 1))
        if edit == 'field' and rows[k]:
            rows[k][draw(st.integers(0, len(rows[k]) - 1))] = draw(
                MMREC_FIELDS)
        elif edit == 'row':
            rows.insert(k, draw(st.lists(MMREC_FIELDS, max_size=6)))
        elif edit == 'drop':
            del rows[k:k + draw(st.integers(1, len(rows)))]
        else:
            lines[0] = draw(MMREC_HEADERS)
        if not rows:
            break
    newline = draw(st.sampled_from(['\n', '\r\n', '\r']))
    bom = draw(st.sampled_from(['', '', '', '\ufeff']))
    text = bom + newline.join([lines[0]] + ['\t'.join(r) for r in rows])
    files['toy.inter'] = text.encode('utf-8', 'surrogatepass')
    return files


VALUES = st.one_of(st.just(1.0), st.floats(), st.integers(-3, 3))
MATRIX_DTYPES = st.sampled_from([np.float64, np.float32, np.int64, np.uint8,
                                 np.bool_, np.complex128])


@st.composite
def odd_matrix(draw):
    shape = draw(st.one_of(st.just((NUM_USERS, NUM_ITEMS)), st.tuples(
        st.integers(0, 7), st.integers(0, 7))))
    cells = st.tuples(st.integers(0, max(shape[0] - 1, 0)),
                      st.integers(0, max(shape[1] - 1, 0)), VALUES)
    entries = draw(st.lists(cells, max_size=8)) if min(shape) > 0 else []
    row, col, val = (list(t) for t in zip(*entries)) if entries else \
        ([], [], [])
    with np.errstate(all='ignore'):
        data = np.array(val, dtype=np.float64).astype(draw(MATRIX_DTYPES))
    mat = sp.coo_matrix((data, (row, col)), shape=shape)
    layout = draw(st.sampled_from(['coo', 'csr', 'csc', 'hacked']))
    if layout == 'hacked':  # internals no constructor would accept
        hack = draw(st.sampled_from(['row', 'shape', 'index', 'data',
                                     'missing']))
        if hack == 'row' and mat.nnz:
            mat.row = mat.row.astype(np.int64) + draw(
                st.sampled_from([-7, shape[0], 2**40]))
        elif hack == 'shape':
            mat._shape = draw(st.sampled_from([(-1, NUM_ITEMS), (2**63 - 1, 2),
                                               (NUM_USERS, ), (3, 4, 5)]))
        elif hack == 'index':
            mat.row = mat.row.astype(np.float64)
        elif hack == 'missing':
            del mat._shape
        else:
            with np.errstate(over='ignore'):
                mat.data = mat.data.real.astype(np.float16)
        return mat
    return mat.asformat(layout)


@st.composite
def odd_pickles(draw) -> Files:
    files = valid_files('diffmm')
    if draw(st.booleans()):  # one odd shape for all three matrices
        shape = (draw(st.sampled_from([NUM_USERS, 7, 4_000_000_000, 2**40])),
                 draw(st.sampled_from([NUM_ITEMS, 6, 4_000_000_000])))
        for split, name in PICKLES.items():
            files[name] = sparse_pickle(PAIRS[split], shape)
        if draw(st.booleans()):
            files['image_feat.npy'] = None
        return files
    name = draw(st.sampled_from(sorted(PICKLES.values())))
    obj = draw(st.one_of(odd_matrix(), JSON_VALUES, st.builds(
        np.array, st.lists(VALUES, max_size=4))))
    files[name] = pickle.dumps(obj)
    return files


FEATURE_DTYPES = st.sampled_from([
    np.float32, np.float64, np.float16, '>f4', np.longdouble, np.int8,
    np.uint64, np.bool_, np.complex64, 'U2', 'S1', 'datetime64[s]',
    [('a', np.float32)]])


@st.composite
def odd_features(draw, fmt: str) -> Files:
    files = valid_files(fmt)
    x = draw(st.one_of(
        hnp.arrays(FEATURE_DTYPES, hnp.array_shapes(
            min_dims=0, max_dims=3, min_side=0, max_side=6)),
        hnp.arrays(np.float32, st.tuples(st.just(NUM_ITEMS),
                                         st.integers(0, 3))),
        st.just(np.array([[1.0, None]] * NUM_ITEMS, dtype=object))))
    name = draw(st.sampled_from(['image_feat.npy', 'text_feat.npy']))
    files[name] = npy(x)
    if draw(st.booleans()):
        files['image_feat.npy'] = None  # features are optional
    return files


FORMATS = sorted(READERS)


def test_valid_files_load():
    for fmt in FORMATS:
        data = load(fmt, valid_files(fmt))
        assert data['user'].num_nodes == NUM_USERS
        assert data['item'].num_nodes == NUM_ITEMS


@EXAMPLES
@given(st.data())
def test_damaged_files(data):
    for fmt in FORMATS:
        load(fmt, data.draw(damaged(fmt), label=fmt))


@EXAMPLES
@given(odd_json())
def test_odd_json(files):
    load('mmssl', files)


@EXAMPLES
@given(odd_tsv())
def test_odd_tsv(files):
    load('mmrec', files)


@EXAMPLES
@given(odd_pickles())
def test_odd_pickles(files):
    load('diffmm', files)


@EXAMPLES
@given(st.data())
def test_odd_features(data):
    for fmt in FORMATS:
        load(fmt, data.draw(odd_features(fmt), label=fmt))
