import io
import json
import os
import pickle
import re

import numpy as np
import pytest
import scipy.sparse as sp
import torch

from pyg_mmssl.data import DataError
from pyg_mmssl.data.graph import EDGE, split_edge_index
from pyg_mmssl.datasets import MultimodalRecDataset, load_dataset
from pyg_mmssl.nn.models import MMGCN, MMSSL, LightGCN

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


@pytest.mark.parametrize('fmt', sorted(WRITERS))
def test_no_feature_files(tmp_path, fmt):
    WRITERS[fmt](tmp_path)
    for f in tmp_path.glob('*_feat.npy'):
        f.unlink()
    data = MultimodalRecDataset(str(tmp_path), fmt)[0]
    assert data.modalities == []
    # Without features, the item count comes from the interactions (or, for
    # diffmm, the matrix shape).
    assert data['item'].num_nodes == NUM_ITEMS
    model = LightGCN.from_data(data, embedding_dim=8, num_layers=2)
    loss = model.loss(*(torch.tensor(v) for v in ([0, 1], [0, 2], [3, 4])))
    loss['loss'].backward()
    assert torch.isfinite(loss['loss'])
    for cls in (MMSSL, MMGCN):
        with pytest.raises(ValueError, match=f"^{cls.__name__} needs item "
                           "features: the dataset has no modalities"):
            cls.from_data(data)


def test_missing_files_do_not_ask_for_features(tmp_path):
    (tmp_path / 'train.json').write_text('{"0": [0]}')
    with pytest.raises(FileNotFoundError) as e:
        MultimodalRecDataset(str(tmp_path), 'mmssl')
    assert 'val.json' in str(e.value) and '_feat.npy' not in str(e.value)


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
    with pytest.raises(DataError, match="key 'x' is not an integer"):
        MultimodalRecDataset(str(tmp_path), 'mmssl')


@pytest.mark.parametrize('text,msg', [
    ('{"0": [1], "0": [2]}', "key '0' appears more than once"),
    ('{"1": [1], "01": [2]}', "keys '1' and '01' are the same user id 1"),
    ('{"0": [%d]}' % 2**70, f"user '0': item id {2**70} is too large, "
     "expected an id < 2**63"),
    ('{"%d": [1]}' % 2**70, f"key {2**70} is too large, expected an id < "
     "2**63"),
    ('{"-1": [1]}', "key -1 is negative, expected an id >= 0"),
    ('{"0": [-1]}', "user '0': item id -1 is negative, expected an id >= 0"),
    ('{"1.0": [1]}', "key '1.0' is not an integer"),
    ('{"\u0661": [1]}', "key '\u0661' is not an integer"),  # Arabic 1
    ('{"0": [1.0]}', "user '0' must map to a list of integer item ids"),
    ('{"0": [true]}', "user '0' must map to a list of integer item ids"),
    ('{"0": [1e400]}', "user '0' must map to a list of integer item ids"),
    ('[' * 100_000, "malformed JSON (nested too deeply)"),
    ('{"0": [%s]}' % ('1' * 5000), "malformed JSON (Exceeds the limit"),
    # 4000000000 among 4 real users would make 4e9-row user tables.
    ('{"4000000000": [1]}', "user id 4000000000 is too large for 5 distinct "
     "user ids: users are counted as max id + 1, and at most max(10 x "
     "distinct, distinct + 1000000) = 1000005 are allowed; renumber the ids "
     "from 0"),
])
def test_json_bad_keys_and_ids(tmp_path, text, msg):
    write_mmssl(tmp_path)
    (tmp_path / 'test.json').write_text(text)
    with pytest.raises(DataError, match='test.json: ' + re.escape(msg)) as e:
        MultimodalRecDataset(str(tmp_path), 'mmssl')
    assert '\n' not in str(e.value)


def test_json_encoding(tmp_path):
    write_mmssl(tmp_path)
    (tmp_path / 'val.json').write_bytes(b'\xef\xbb\xbf' + json.dumps(
        to_json(VAL)).encode())  # a UTF-8 byte-order mark is fine
    assert MultimodalRecDataset(str(tmp_path), 'mmssl')[0]['user'].num_nodes \
        == NUM_USERS
    (tmp_path / 'val.json').write_bytes(b'\x89PNG\r\n\x1a\n\xff\x00')
    with pytest.raises(DataError, match="val.json: not a UTF-8 text file"):
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


def npy_bytes(x):
    buf = io.BytesIO()
    np.save(buf, x)
    return buf.getvalue()


def npy_header(shape, descr='<f4'):
    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(
        buf, {'descr': descr, 'fortran_order': False, 'shape': shape})
    return buf.getvalue()


GOOD_NPY = npy_bytes(np.ones((NUM_ITEMS, 3), np.float32))


@pytest.mark.parametrize('content,msg', [
    (b'', "empty or truncated .npy file"),
    (GOOD_NPY[:5], "empty or truncated .npy file"),
    (GOOD_NPY[:30], "empty or truncated .npy file"),
    (GOOD_NPY[:-5], "empty or truncated .npy file (shape (5, 3) float32 "
     "needs 60 data bytes, found 55)"),
    # A header claiming 150 GB must not be allocated before the check.
    (npy_header((10**10, 4)) + bytes(16), "empty or truncated .npy file"),
    (GOOD_NPY[:10] + b'{garbage}'.ljust(len(npy_header((5, 3))) - 11)
     + b'\n' + bytes(60), "corrupted .npy header"),
    (b'image,text\n1,2\n', "not a .npy file"),
    (b'PK\x03\x04' + bytes(40), "not a .npy file"),  # an .npz (zip)
    (pickle.dumps(np.ones((5, 3))), "not a .npy file"),
    (npy_bytes(np.ones((NUM_ITEMS, 0))), "has 0 feature columns, expected "
     "at least one"),
    (npy_bytes(np.ones((NUM_ITEMS, 3), np.complex64)), "expected real "
     "numbers (an integer or float dtype), got dtype complex64"),
    (npy_bytes(np.ones((NUM_ITEMS, 3), bool)), "expected real numbers "
     "(an integer or float dtype), got dtype bool"),
    (npy_bytes(np.full((NUM_ITEMS, 3), 'a')), "expected real numbers "
     "(an integer or float dtype), got dtype <U1"),
    (npy_bytes(np.array([[{}]] * NUM_ITEMS, dtype=object)), "expected real "
     "numbers (an integer or float dtype), got dtype object"),
    (npy_bytes(np.ones(NUM_ITEMS)), "expected a 2-D [num_items, dim] "
     "feature matrix, got shape (5,)"),
    (npy_bytes(np.ones((NUM_ITEMS, 3, 2))), "expected a 2-D [num_items, "
     "dim] feature matrix, got shape (5, 3, 2)"),
    (npy_bytes(np.float32(1)), "expected a 2-D [num_items, dim] feature "
     "matrix, got shape ()"),
])
def test_bad_feature_files(tmp_path, content, msg):
    write_mmssl(tmp_path)
    (tmp_path / 'text_feat.npy').write_bytes(content)
    with pytest.raises(DataError, match='text_feat.npy: ' + re.escape(msg)) \
            as e:
        MultimodalRecDataset(str(tmp_path), 'mmssl')
    assert '\n' not in str(e.value)


def test_odd_but_real_feature_dtypes_load(tmp_path):
    write_mmssl(tmp_path)
    for dtype in ('>f8', np.uint64, np.int8, np.longdouble):
        np.save(tmp_path / 'text_feat.npy', np.ones((NUM_ITEMS, 3), dtype))
        data = MultimodalRecDataset(str(tmp_path), 'mmssl',
                                    force_reload=True)[0]
        assert data['item']['text'].dtype == torch.float32
        assert data['item']['text'].sum() == NUM_ITEMS * 3


def test_diffmm_refuses_foreign_pickles(tmp_path):
    write_diffmm(tmp_path)

    class Evil:
        def __reduce__(self):
            return (os.system, ('echo pwned > ' + str(tmp_path / 'x'), ))

    with open(tmp_path / 'valMat.pkl', 'wb') as f:
        pickle.dump(Evil(), f)
    with pytest.raises(DataError, match=r"valMat.pkl: refusing to load "
                       r"(global )?'posix.system'"):
        MultimodalRecDataset(str(tmp_path), 'diffmm')
    assert not (tmp_path / 'x').exists()

    with open(tmp_path / 'valMat.pkl', 'wb') as f:
        pickle.dump(np.zeros(3), f)
    with pytest.raises(DataError, match="expected a pickled scipy.sparse"):
        MultimodalRecDataset(str(tmp_path), 'diffmm')
    (tmp_path / 'valMat.pkl').write_bytes(b'garbage')
    with pytest.raises(DataError, match="valMat.pkl: not a readable pickle"):
        MultimodalRecDataset(str(tmp_path), 'diffmm')


def test_diffmm_huge_shape(tmp_path):
    write_diffmm(tmp_path, shape=(4_000_000_000, NUM_ITEMS))
    with pytest.raises(DataError, match=re.escape(
            "trnMat.pkl: shape (4000000000, 5) has 4000000000 users but only "
            "4 distinct user ids appear in the splits; at most max(10 x "
            "distinct, distinct + 1000000) = 1000004 are allowed")):
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
    with pytest.raises(DataError, match="line 12: itemID 'x' is not an "
                       "integer"):
        MultimodalRecDataset(str(tmp_path), 'mmrec')
    write_mmrec(tmp_path, extra_rows=['1\t2\t1\t5\t7'])
    with pytest.raises(DataError, match="line 12: x_label 7 is not 0"):
        MultimodalRecDataset(str(tmp_path), 'mmrec')
    (tmp_path / 'toy.inter').write_text('user\titem\n0\t1\n')
    with pytest.raises(DataError, match="header lacks column"):
        MultimodalRecDataset(str(tmp_path), 'mmrec')


@pytest.mark.parametrize('row,msg', [
    ('1\t2.7\t1\t5\t0', "itemID '2.7' is not an integer"),
    ('1\t3.0\t1\t5\t0', "itemID '3.0' is not an integer (write ids and "
     "labels as plain integers such as 3, not 3.0 or 3e0)"),
    ('1\t2\t1\t5\t1.9', "x_label '1.9' is not an integer"),
    ('1e3\t2\t1\t5\t0', "userID '1e3' is not an integer"),
    ('inf\t2\t1\t5\t0', "userID 'inf' is not an integer"),
    ('1\tnan\t1\t5\t0', "itemID 'nan' is not an integer"),
    ('1\t\t1\t5\t0', "itemID '' is not an integer"),
    ('1\t\u0662\t1\t5\t0', "itemID '\u0662' is not an integer"),
    ('-1\t2\t1\t5\t0', "userID -1 is negative, expected an id >= 0"),
    ('%d\t2\t1\t5\t0' % 2**63, f"userID {2**63} is too large, expected "
     "an id < 2**63"),
])
def test_mmrec_ids_must_be_integer_literals(tmp_path, row, msg):
    write_mmrec(tmp_path, extra_rows=[row])
    with pytest.raises(DataError, match=r'toy.inter, line 12: '
                       + re.escape(msg)):
        MultimodalRecDataset(str(tmp_path), 'mmrec')


def test_mmrec_huge_ids(tmp_path):
    write_mmrec(tmp_path, extra_rows=['4000000000\t2\t1\t5\t0'])
    with pytest.raises(DataError, match=re.escape(
            "toy.inter (x_label=0): user id 4000000000 is too large for 5 "
            "distinct user ids")):
        MultimodalRecDataset(str(tmp_path), 'mmrec')
    write_mmrec(tmp_path, extra_rows=['%d\t2\t1\t5\t0' % (2**63 - 1)])
    with pytest.raises(DataError, match=f"user id {2**63 - 1} is too large"):
        MultimodalRecDataset(str(tmp_path), 'mmrec')
    # Without feature files, the item count is derived from the ids too.
    write_mmrec(tmp_path, extra_rows=['1\t4000000000\t1\t5\t2'])
    for f in tmp_path.glob('*_feat.npy'):
        f.unlink()
    with pytest.raises(DataError, match=re.escape(
            "toy.inter (x_label=2): item id 4000000000 is too large for 6 "
            "distinct item ids")):
        MultimodalRecDataset(str(tmp_path), 'mmrec')


def test_mmrec_file_level_problems(tmp_path):
    header = 'userID\titemID\trating\ttimestamp\tx_label\n'
    write_mmrec(tmp_path)
    (tmp_path / 'toy.inter').write_text(header)
    with pytest.raises(DataError, match=r"toy.inter: has a header but no "
                       r"interactions$"):
        MultimodalRecDataset(str(tmp_path), 'mmrec')
    (tmp_path / 'toy.inter').write_bytes(b'\x89PNG\r\n\x1a\n\xff\xd8\x00')
    with pytest.raises(DataError, match=r"toy.inter: not a UTF-8 text file"):
        MultimodalRecDataset(str(tmp_path), 'mmrec')
    (tmp_path / 'toy.inter').write_text(header + '0\t1\x00\t1\t5\t0\n')
    with pytest.raises(DataError, match=re.escape(
            "toy.inter, line 2: itemID '1\\x00' is not an integer")):
        MultimodalRecDataset(str(tmp_path), 'mmrec')


def test_mmrec_byte_order_mark(tmp_path):
    write_mmrec(tmp_path)
    path = tmp_path / 'toy.inter'
    path.write_bytes(b'\xef\xbb\xbf' + path.read_bytes())
    data = MultimodalRecDataset(str(tmp_path), 'mmrec')[0]
    assert data['user'].num_nodes == NUM_USERS
    assert data[EDGE].edge_index.size(1) == len(TRAIN)


def test_mmrec_several_inter_files(tmp_path):
    # MMRec's layout <dataset>/<dataset>.inter: the folder name picks.
    root = tmp_path / 'toy'
    root.mkdir()
    write_mmrec(root)
    (root / 'toy-5core.inter').write_text('not read')
    data = MultimodalRecDataset(str(root), 'mmrec')[0]
    assert data[EDGE].edge_index.size(1) == len(TRAIN)

    other = tmp_path / 'other'
    other.mkdir()
    write_mmrec(other)
    (other / 'baby.inter').write_text('not read')
    with pytest.raises(DataError, match=re.escape(
            "other: found 2 '.inter' files (baby.inter, toy.inter) and none "
            "is named after the folder (other.inter); pass the one to read as "
            "name=, e.g. MultimodalRecDataset(root, 'mmrec', name='baby') or "
            "--inter baby on the command line")):
        MultimodalRecDataset(str(other), 'mmrec')
    data = MultimodalRecDataset(str(other), 'mmrec', name='toy')[0]
    assert data[EDGE].edge_index.size(1) == len(TRAIN)


def test_mmrec_duplicates_removed(tmp_path, caplog):
    write_mmrec(tmp_path, extra_rows=['0\t0\t1\t5\t0'])
    data = MultimodalRecDataset(str(tmp_path), 'mmrec')[0]
    assert data[EDGE].edge_index.size(1) == len(TRAIN)
    assert 'removed 1 duplicate' in caplog.text
