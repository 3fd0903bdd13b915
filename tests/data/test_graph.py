import logging
import re

import numpy as np
import pytest
import torch

from pyg_mmssl.data import DataError, build_data, statistics, to_csr
from pyg_mmssl.data.graph import EDGE, REV_EDGE


def splits(train=((0, 0), (1, 2)), val=((0, 1), ), test=((1, 0), )):
    return {k: torch.tensor(v).t() for k, v in
            (('train', train), ('val', val), ('test', test))}


def feats(n=3, d=4):
    return {'image': np.random.rand(n, d).astype(np.float16)}


def test_build_data_layout():
    data = build_data(2, 3, splits(), feats())
    assert data['user'].num_nodes == 2 and data['item'].num_nodes == 3
    assert data.modalities == ['image']
    assert data['item']['image'].dtype == torch.float32  # float16 upcast
    assert data[EDGE].edge_index.tolist() == [[0, 1], [0, 2]]
    assert data[REV_EDGE].edge_index.tolist() == [[0, 2], [0, 1]]
    # Held-out interactions are never stored as a message-passing edge_index.
    assert data[EDGE].val_edge_index.tolist() == [[0], [1]]
    assert data[EDGE].test_edge_index.tolist() == [[1], [0]]
    assert statistics(data)['train_interactions'] == 2


@pytest.mark.parametrize('train,msg', [
    (((0, 0), (2, 1)), "interaction #1 (user 2, item 1) has user id 2"),
    (((0, 0), (1, 3)), "interaction #1 (user 1, item 3) has item id 3"),
    (((0, -1), ), "has item id -1"),
])
def test_ids_out_of_range(train, msg):
    with pytest.raises(DataError, match=msg.replace('(', r'\(').replace(
            ')', r'\)')):
        build_data(2, 3, splits(train=train), feats(), {'train': 'x.json'})


def test_empty_split():
    with pytest.raises(DataError, match="the val split has no interactions"):
        build_data(2, 3, splits(val=()), feats())


def test_feature_rows_and_values():
    with pytest.raises(DataError, match="has 4 feature rows, expected one per "
                       r"item \(3 items\)"):
        build_data(2, 3, splits(), feats(n=4))
    bad = feats()
    bad['image'][1, 2] = np.nan
    with pytest.raises(DataError, match="row 1 contains NaN, Inf"):
        build_data(2, 3, splits(), bad, {'image': 'image_feat.npy'})
    bad['image'][1, 2] = np.inf
    with pytest.raises(DataError, match="image_feat.npy: row 1"):
        build_data(2, 3, splits(), bad, {'image': 'image_feat.npy'})
    with pytest.raises(DataError, match="2-D"):
        build_data(2, 3, splits(), {'image': np.zeros(3)})


def test_duplicates_removed_with_warning(caplog):
    with caplog.at_level(logging.WARNING):
        data = build_data(2, 3, splits(train=((0, 0), (0, 0), (1, 2))),
                          feats())
    assert data[EDGE].edge_index.size(1) == 2
    assert 'removed 1 duplicate' in caplog.text


def test_to_csr():
    rowptr, col = to_csr(torch.tensor([[1, 0, 1], [2, 1, 0]]), 3, 3)
    assert rowptr.tolist() == [0, 1, 3, 3]
    assert col.tolist() == [1, 0, 2]


def test_held_out_pairs_in_train_warn(caplog):
    with caplog.at_level(logging.WARNING):
        data = build_data(2, 3, splits(val=((0, 0), (0, 1)),
                                       test=((1, 2), (0, 0), (1, 0))),
                          feats(), {'val': 'val.json', 'test': 'test.json'})
    assert data[EDGE].test_edge_index.size(1) == 3  # kept, only reported
    assert ("val.json: 1 val interaction(s) are also training interactions; "
            "they can never be ranked") in caplog.text
    assert "test.json: 2 test interaction(s) are also training" in caplog.text


def test_no_warning_without_overlap(caplog):
    with caplog.at_level(logging.WARNING):
        build_data(2, 3, splits(), feats())
    assert caplog.text == ''


def test_too_many_user_item_pairs():
    # (user, item) pairs are keyed as user * num_items + item in int64.
    n = 2**62
    with pytest.raises(DataError, match=r"4611686018427387904 users x 4 "
                       r"items is too large: need fewer than 2\*\*63 "
                       r"\(user, item\) pairs"):
        build_data(n, 4, splits(train=((n - 1, 3), (0, 0))), {})


@pytest.mark.parametrize('pairs', [
    torch.tensor([[0., float('inf')], [0., 1.]]),
    torch.tensor([[0., float('nan')], [0., 1.]]),
    torch.tensor([[0., 1e30], [0., 1.]]),
    torch.tensor([[True, False], [True, False]]),
])
def test_non_integer_ids(pairs):
    with pytest.raises(DataError, match=r"^x.json: user/item ids must be "
                       r"integers"):
        build_data(2, 3, {**splits(), 'train': pairs}, feats(),
                   {'train': 'x.json'})


@pytest.mark.parametrize('x,msg', [
    (np.ones((3, 2), np.complex64), "expected real numbers (an integer or "
     "float dtype), got dtype complex64"),
    (torch.ones(3, 2, dtype=torch.complex64), "expected real numbers (an "
     "integer or float dtype), got dtype torch.complex64"),
    (np.ones((3, 2), bool), "expected real numbers (an integer or float "
     "dtype), got dtype bool"),
    (torch.ones(3, 2, dtype=torch.bool), "expected real numbers (an integer "
     "or float dtype), got dtype torch.bool"),
    (np.ones((3, 0), np.float32), "has 0 feature columns, expected at least "
     "one"),
    (torch.ones(3, 0), "has 0 feature columns, expected at least one"),
    (np.full((3, 2), 1e300), "row 0 contains NaN, Inf or a value too large "
     "for float32"),
])
def test_feature_dtypes_and_columns(x, msg):
    with pytest.raises(DataError, match='^img: ' + re.escape(msg)):
        build_data(2, 3, splits(), {'image': x}, {'image': 'img'})


def test_integer_and_byteswapped_features_become_float32():
    for x in (np.arange(6, dtype='>f8').reshape(3, 2),
              np.arange(6, dtype=np.uint64).reshape(3, 2),
              torch.arange(6).view(3, 2)):
        data = build_data(2, 3, splits(), {'image': x})
        assert data['item']['image'].dtype == torch.float32
        assert data['item']['image'].view(-1).tolist() == list(range(6))


def test_data_error_is_one_line():
    e = DataError("x.pkl: not a readable pickle (A load persistent id "
                  "instruction was encountered,\nbut no persistent_load)")
    assert str(e) == ("x.pkl: not a readable pickle (A load persistent id "
                      "instruction was encountered, but no persistent_load)")


def test_statistics_of_the_held_out_splits(caplog):
    # 3 users, 20 items: the top ceil(20 / 10) = 2 items by training count
    # are 0 (three interactions) and 1 (two, tied with 2; the lower id wins).
    train = ((0, 0), (1, 0), (2, 0), (0, 1), (1, 1), (0, 2), (2, 2), (1, 5))
    data = build_data(3, 20, splits(train=train, val=((0, 3), (2, 1)),
                                    test=((1, 2), (1, 4), (0, 6))),
                      feats(20))
    assert not caplog.records  # no held-out pair is a training pair
    stats = statistics(data)
    assert stats['train_on_top_items'] == round(5 / 8, 4)
    # val: users 0 and 2 (three and two training items; torch's median of
    # an even count is the lower middle value); item 1 is on top.
    assert stats['val_users'] == 2 and stats['val_users_median_train'] == 2
    assert stats['val_on_top_items'] == .5
    # test: users 0 and 1 (three training items each); none on top.
    assert stats['test_users'] == 2 and stats['test_users_median_train'] == 3
    assert stats['test_on_top_items'] == 0.
