import logging

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
    with pytest.raises(DataError, match="row 1 contains NaN or Inf"):
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
