import json
import os
import pickle

import numpy as np
import pytest
import scipy.sparse as sp
import torch

from pyg_mmssl.data import DataError
from pyg_mmssl.data.graph import EDGE, split_edge_index
from pyg_mmssl.datasets import MultimodalRecDataset, load_dataset

NUM_USERS, NUM_ITEMS = 4, 5
TRAIN = [(0, 0), (0, 1), (1, 2), (2, 3), (3, 4), (3, 0)]
VAL = [(0, 2), (1, 3)]
TEST = [(2, 4), (3, 1)]


def write_features(root, n=NUM_ITEMS, **kw):
    rng = np.random.default_rng(0)
    for name, dim in (('image', 4), ('text', 3)):
        np.save(root / f'{name}_feat.npy',
                kw.get(name, rng.random((n, dim)).astype(np.float32)))


def to_json(pairs):
    out = {}
    for u, i in pairs:
        out.setdefault(str(u), []).append(i)
    return out


def write_mmssl(root, train=TRAIN):
    for name, pairs in (('train', train), ('val', VAL), ('test', TEST)):
        (root / f'{name}.json').write_text(json.dumps(to_json(pairs)))
    write_features(root)


def write_diffmm(root, shape=(NUM_USERS, NUM_ITEMS)):
    for name, pairs in (('trnMat', TRAIN), ('valMat', VAL), ('tstMat', TEST)):
        u, i = zip(*pairs)
        mat = sp.coo_matrix((np.ones(len(u)), (u, i)), shape=shape)
        with open(root / f'{name}.pkl', 'wb') as f:
            pickle.dump(mat, f)
    write_features(root)


def write_mmrec(root, extra_rows=()):
    rows = ['userID\titemID\trating\ttimestamp\tx_label']
    for label, pairs in enumerate((TRAIN, VAL, TEST)):
        rows += [f'{u}\t{i}\t1\t100\t{label}' for u, i in pairs]
    rows += list(extra_rows)
    (root / 'toy.inter').write_text('\n'.join(rows) + '\n')
    write_features(root)


WRITERS = {'mmssl': write_mmssl, 'diffmm': write_diffmm, 'mmrec': write_mmrec}


@pytest.mark.parametrize('fmt', sorted(WRITERS))
def test_formats_load_to_the_same_graph(tmp_path, fmt):
    WRITERS[fmt](tmp_path)
    data = MultimodalRecDataset(str(tmp_path), fmt)[0]
    assert data['user'].num_nodes == NUM_USERS
    assert data['item'].num_nodes == NUM_ITEMS
    assert data.modalities == ['image', 'text']
    assert data['item']['image'].shape == (NUM_ITEMS, 4)
    for split, pairs in (('train', TRAIN), ('val', VAL), ('test', TEST)):
        got = split_edge_index(data, split).t().tolist()
        assert sorted(map(tuple, got)) == sorted(pairs)
    assert (tmp_path / 'processed').is_dir()
    assert load_dataset(fmt, str(tmp_path))[EDGE].edge_index.size(1) == 6


def test_cache_is_reused_and_rebuilt_on_change(tmp_path):
    write_mmssl(tmp_path)
    MultimodalRecDataset(str(tmp_path), 'mmssl')
    cached = list((tmp_path / 'processed').glob('data_*.pt'))
    assert len(cached) == 1
    mtime = cached[0].stat().st_mtime_ns
    MultimodalRecDataset(str(tmp_path), 'mmssl')
    assert cached[0].stat().st_mtime_ns == mtime  # not re-processed

    write_mmssl(tmp_path, train=TRAIN + [(1, 4)])
    data = MultimodalRecDataset(str(tmp_path), 'mmssl')[0]
    assert data[EDGE].edge_index.size(1) == 7
    assert len(list((tmp_path / 'processed').glob('data_*.pt'))) == 1


def test_read_only_root_caches_elsewhere(tmp_path, monkeypatch):
    raw = tmp_path / 'raw'
    raw.mkdir()
    write_mmssl(raw)
    os.chmod(raw, 0o555)
    try:
        ds = MultimodalRecDataset(str(raw), 'mmssl')
        assert not (raw / 'processed').exists()
        assert ds.processed_dir.startswith(str(tmp_path / 'cache'))
    finally:
        os.chmod(raw, 0o755)


def test_missing_files(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        MultimodalRecDataset(str(tmp_path / 'nope'), 'mmssl')
    write_mmssl(tmp_path)
    os.remove(tmp_path / 'val.json')
    with pytest.raises(FileNotFoundError, match="val.json"):
        MultimodalRecDataset(str(tmp_path), 'mmssl')
    with pytest.raises(ValueError, match="unknown format"):
        MultimodalRecDataset(str(tmp_path), 'csv')


def test_no_feature_files(tmp_path):
    write_mmssl(tmp_path)
    for f in tmp_path.glob('*_feat.npy'):
        f.unlink()
    with pytest.raises(FileNotFoundError, match="_feat.npy"):
        MultimodalRecDataset(str(tmp_path), 'mmssl')


def test_malformed_json(tmp_path):
    write_mmssl(tmp_path)
    (tmp_path / 'test.json').write_text('{"0": [1, 2}')
    with pytest.raises(DataError, match=r"test.json: malformed JSON at line 1"):
        MultimodalRecDataset(str(tmp_path), 'mmssl')
    (tmp_path / 'test.json').write_text('{"0": [1, "a"]}')
    with pytest.raises(DataError, match="test.json: user '0' must map to a "
                       "list of integer item ids"):
        MultimodalRecDataset(str(tmp_path), 'mmssl')
    (tmp_path / 'test.json').write_text('{"x": [1]}')
    with pytest.raises(DataError, match="key 'x' is not an integer user id"):
        MultimodalRecDataset(str(tmp_path), 'mmssl')


def test_json_out_of_range_and_empty_split(tmp_path):
    write_mmssl(tmp_path)
    (tmp_path / 'val.json').write_text('{"0": [9]}')
    with pytest.raises(DataError, match=r"val.json: interaction #0 \(user 0, "
                       r"item 9\) has item id 9, expected 0 <= item id < 5"):
        MultimodalRecDataset(str(tmp_path), 'mmssl')
    (tmp_path / 'val.json').write_text('{"0": []}')
    with pytest.raises(DataError, match="val.json: the val split has no "
                       "interactions"):
        MultimodalRecDataset(str(tmp_path), 'mmssl')


def test_feature_problems(tmp_path):
    write_mmssl(tmp_path)
    np.save(tmp_path / 'text_feat.npy', np.zeros((NUM_ITEMS + 1, 3)))
    with pytest.raises(DataError, match="inconsistent item counts"):
        MultimodalRecDataset(str(tmp_path), 'mmssl')
    bad = np.ones((NUM_ITEMS, 3))
    bad[2, 0] = np.inf
    np.save(tmp_path / 'text_feat.npy', bad)
    with pytest.raises(DataError, match="text_feat.npy: row 2 contains NaN"):
        MultimodalRecDataset(str(tmp_path), 'mmssl')
    np.save(tmp_path / 'text_feat.npy', np.ones((NUM_ITEMS, 3), np.float16))
    data = MultimodalRecDataset(str(tmp_path), 'mmssl')[0]
    assert data['item']['text'].dtype == torch.float32


def test_diffmm_refuses_foreign_pickles(tmp_path):
    write_diffmm(tmp_path)

    class Evil:
        def __reduce__(self):
            return (os.system, ('echo pwned > ' + str(tmp_path / 'x'), ))

    with open(tmp_path / 'valMat.pkl', 'wb') as f:
        pickle.dump(Evil(), f)
    with pytest.raises(DataError, match=r"valMat.pkl: refusing to load "
                       r"'posix.system'"):
        MultimodalRecDataset(str(tmp_path), 'diffmm')
    assert not (tmp_path / 'x').exists()

    with open(tmp_path / 'valMat.pkl', 'wb') as f:
        pickle.dump(np.zeros(3), f)
    with pytest.raises(DataError, match="expected a pickled scipy.sparse"):
        MultimodalRecDataset(str(tmp_path), 'diffmm')
    (tmp_path / 'valMat.pkl').write_bytes(b'garbage')
    with pytest.raises(DataError, match="valMat.pkl: not a readable pickle"):
        MultimodalRecDataset(str(tmp_path), 'diffmm')


def test_diffmm_inconsistent_shapes(tmp_path):
    write_diffmm(tmp_path)
    u, i = zip(*VAL)
    mat = sp.coo_matrix((np.ones(2), (u, i)), shape=(NUM_USERS + 1, NUM_ITEMS))
    with open(tmp_path / 'valMat.pkl', 'wb') as f:
        pickle.dump(mat.tocsr(), f)
    with pytest.raises(DataError, match="inconsistent user x item shapes"):
        MultimodalRecDataset(str(tmp_path), 'diffmm')


def test_mmrec_bad_rows(tmp_path):
    write_mmrec(tmp_path, extra_rows=['1\t2\t1\t5'])
    with pytest.raises(DataError, match=r"toy.inter, line 12: expected 5 "
                       r"tab-separated fields, got 4"):
        MultimodalRecDataset(str(tmp_path), 'mmrec')
    write_mmrec(tmp_path, extra_rows=['1\tx\t1\t5\t0'])
    with pytest.raises(DataError, match="line 12: userID, itemID and x_label "
                       "must be integers"):
        MultimodalRecDataset(str(tmp_path), 'mmrec')
    write_mmrec(tmp_path, extra_rows=['1\t2\t1\t5\t7'])
    with pytest.raises(DataError, match="line 12: x_label 7 is not 0"):
        MultimodalRecDataset(str(tmp_path), 'mmrec')
    (tmp_path / 'toy.inter').write_text('user\titem\n0\t1\n')
    with pytest.raises(DataError, match="header lacks column"):
        MultimodalRecDataset(str(tmp_path), 'mmrec')


def test_mmrec_duplicates_removed(tmp_path, caplog):
    write_mmrec(tmp_path, extra_rows=['0\t0\t1\t5\t0'])
    data = MultimodalRecDataset(str(tmp_path), 'mmrec')[0]
    assert data[EDGE].edge_index.size(1) == len(TRAIN)
    assert 'removed 1 duplicate' in caplog.text
