import json
import logging

import numpy as np
import pytest

from pyg_mmssl.data import DataError, build_data, split_edge_index
from pyg_mmssl.data.recbole import (SPLIT_DIR, read_grouplens, read_id_tokens,
                                    read_recbole)

USERS = ['bob', 'ann', 'cat', 'dan']
ITEMS = ['m3', 'm1', 'm2', 'm5', 'm4']  # m6 only in the .item file


def write_inter(root, header='user_id:token\titem_id:token\trating:float\t'
                'timestamp:float', rows=None, name='toy'):
    if rows is None:  # every user rates every item; ratings 1..5
        rows = [f'{u}\t{i}\t{1 + (k + n) % 5}\t{100 * n + k}'
                for n, u in enumerate(USERS) for k, i in enumerate(ITEMS)]
    (root / f'{name}.inter').write_text('\n'.join([header] + rows) + '\n')


def write_item(root, name='toy'):
    (root / f'{name}.item').write_text(
        'item_id:token\ttitle:token_seq\tgenre:token_seq\tyear:float\t'
        'vec:float_seq\n'
        'm1\tThe Film\tDrama\t1990\t1 2\n'
        'm2\tOther Film\tComedy Drama\t1991\t3 4\n'
        'm6\tUnseen\t\t1992\t\n'
        'm3\tThird\tAction\t1993\t5 6\n')


def parsed_data(root, **kw):
    return build_data(*read_recbole(str(root), **kw))


def test_tokens_become_sorted_ids_and_item_fields_modalities(tmp_path):
    write_inter(tmp_path)
    write_item(tmp_path)
    num_users, num_items, splits, feats, sources = read_recbole(str(tmp_path))
    assert (num_users, num_items) == (4, 6)
    users, items = read_id_tokens(
        str(tmp_path / SPLIT_DIR / 'toy.random-80-10-10.seed0'))
    assert users == ['ann', 'bob', 'cat', 'dan']
    assert items == ['m1', 'm2', 'm3', 'm4', 'm5', 'm6']
    # Default: the float_seq and token_seq fields, sorted by name.
    assert list(feats) == ['genre', 'title', 'vec']
    # genre vocabulary: Action, Comedy, Drama; rows in item id order.
    assert feats['genre'].tolist() == [[0, 0, 1], [0, 1, 1], [1, 0, 0],
                                       [0, 0, 0], [0, 0, 0], [0, 0, 0]]
    assert feats['vec'].tolist() == [[1, 2], [3, 4], [5, 6], [0, 0], [0, 0],
                                     [0, 0]]
    assert feats['title'].shape == (6, 5) and feats['title'].dtype == \
        np.float32
    assert "toy.item, field 'vec'" in sources['vec']
    # 5 interactions per user: 3 / 1 / 1.
    assert [splits[s].shape[1] for s in ('train', 'val', 'test')] == \
        [12, 4, 4]


def test_item_fields_option_and_feature_files(tmp_path):
    write_inter(tmp_path)
    write_item(tmp_path)
    _, _, _, feats, _ = read_recbole(str(tmp_path), item_fields=['year'])
    assert list(feats) == ['year']
    assert feats['year'][:, 0].tolist() == [1990, 1991, 1993, 0, 0, 1992]
    assert read_recbole(str(tmp_path), item_fields=[])[3] == {}
    # A <field>_feat.npy replaces that field (here: encoded titles).
    np.save(tmp_path / 'title_feat.npy', np.ones((6, 3), dtype=np.float32))
    feats = read_recbole(str(tmp_path))[3]
    assert list(feats) == ['genre', 'title', 'vec']
    assert feats['title'].shape == (6, 3)
    with pytest.raises(DataError, match="replaces item field 'title'"):
        read_recbole(str(tmp_path), item_fields=['title'])
    with pytest.raises(DataError, match="no item field 'plot'"):
        read_recbole(str(tmp_path), item_fields=['plot'])


def test_missing_item_file_means_no_modalities(tmp_path):
    write_inter(tmp_path, header='user_id\titem_id\trating\ttimestamp')
    data = parsed_data(tmp_path)
    assert data.modalities == [] and data['item'].num_nodes == 5
    with pytest.raises(DataError, match='no item file'):
        read_recbole(str(tmp_path), item_fields=['genre'])


def test_split_is_written_once_and_read_back(tmp_path, caplog):
    write_inter(tmp_path)
    a = read_recbole(str(tmp_path), split_seed=7)[2]
    folder = tmp_path / SPLIT_DIR / 'toy.random-80-10-10.seed7'
    meta = json.loads((folder / 'split.json').read_text())
    assert meta['options']['seed'] == 7 and meta['inter'] == 'toy.inter'
    stored = json.loads((folder / 'test.json').read_text())
    assert sum(map(len, stored.values())) == 4
    # Read back, not recomputed: a hand-edited split is what is used.
    stored['0'] = [4]
    (folder / 'test.json').write_text(json.dumps(stored))
    b = read_recbole(str(tmp_path), split_seed=7)[2]
    assert (0, 4) in set(map(tuple, b['test'].T.tolist()))
    assert np.array_equal(a['train'], b['train'])
    # Same seed elsewhere: the same split; another seed: its own folder.
    other = tmp_path / 'copy'
    other.mkdir()
    write_inter(other)
    c = read_recbole(str(other), split_seed=7)[2]
    assert all(np.array_equal(a[s], c[s]) for s in a)
    read_recbole(str(tmp_path), split_seed=8)
    assert (tmp_path / SPLIT_DIR / 'toy.random-80-10-10.seed8').is_dir()
    # The data changed: the stored split no longer fits.
    write_inter(tmp_path, rows=['ann\tm1\t1\t1'] * 3 + ['bob\tm2\t1\t1'])
    with pytest.raises(DataError, match='another version of .*toy.inter'):
        read_recbole(str(tmp_path), split_seed=7)


def test_rating_threshold_and_repeated_pairs(tmp_path, caplog):
    write_inter(tmp_path)
    splits = read_recbole(str(tmp_path), rating_threshold=3)[2]
    # Ratings 3, 4, 5 of 1..5: 3 of 5 per user, split 1 / 1 / 1.
    assert [splits[s].shape[1] for s in ('train', 'val', 'test')] == \
        [4, 4, 4]
    assert (tmp_path / SPLIT_DIR / 'toy.random-80-10-10.seed0.min3').is_dir()
    with pytest.raises(DataError, match='no interaction has a rating >= 9'):
        read_recbole(str(tmp_path), rating_threshold=9)
    write_inter(tmp_path, header='user_id\titem_id', rows=[
        'a\tx', 'a\tx', 'a\ty', 'a\tz'], name='other')
    with caplog.at_level(logging.WARNING):
        splits = read_recbole(str(tmp_path), name='other')[2]
    assert 'removed 1 repeated' in caplog.text
    with pytest.raises(DataError, match="needs a 'rating' field"):
        read_recbole(str(tmp_path), name='other', rating_threshold=1)


def test_temporal_split_takes_the_newest_for_test(tmp_path):
    write_inter(tmp_path)
    data = parsed_data(tmp_path, split='temporal')
    # Timestamps grow with the item's column: m4 (id 3) is each user's
    # newest, m5 (id 4) the one before it.
    assert split_edge_index(data, 'test')[1].tolist() == [3] * 4
    assert split_edge_index(data, 'val')[1].tolist() == [4] * 4
    write_inter(tmp_path, header='user_id\titem_id', rows=['a\tx'],
                name='notime')
    with pytest.raises(DataError, match="needs a 'timestamp' field"):
        read_recbole(str(tmp_path), name='notime', split='temporal')


def test_users_with_fewer_than_three_keep_all_in_train(tmp_path):
    write_inter(tmp_path, header='user_id\titem_id', rows=[
        'a\tx', 'a\ty', 'b\tx', 'b\ty', 'b\tz'])
    s = read_recbole(str(tmp_path))[2]
    assert sorted(s['train'][0].tolist()) == [0, 0, 1]
    assert s['val'][0].tolist() == [1] and s['test'][0].tolist() == [1]


@pytest.mark.parametrize('rows, message', [
    (['a\tx\t1'], 'toy.inter, line 2: expected 2 tab-separated fields, got 3'),
    (['a\tx', '\ty'], "toy.inter, line 3: empty 'user_id'"),
])
def test_bad_rows_name_file_and_line(tmp_path, rows, message):
    write_inter(tmp_path, header='user_id\titem_id', rows=rows)
    with pytest.raises(DataError, match=message):
        read_recbole(str(tmp_path))


def test_bad_item_records(tmp_path):
    write_inter(tmp_path)
    (tmp_path / 'toy.item').write_text('item_id:token\tv:float_seq\n'
                                       'm1\t1 2\nm2\t1 2 3\n')
    with pytest.raises(DataError, match=r"toy.item, line 3: field 'v' has 3 "
                       r"values, expected 2"):
        read_recbole(str(tmp_path))
    (tmp_path / 'toy.item').write_text('item_id:token\tv:float_seq\n'
                                       'm1\t1 2\nm1\t1 2\n')
    with pytest.raises(DataError, match="line 3: item 'm1' already has a "
                       "record at line 2"):
        read_recbole(str(tmp_path))
    (tmp_path / 'toy.item').write_text('item_id:token\tv:float_seq\n'
                                       'm1\t1 nan\n')
    with pytest.raises(DataError, match="line 2: field 'v' holds NaN"):
        read_recbole(str(tmp_path))


def test_grouplens_layout(tmp_path):
    (tmp_path / 'u.data').write_text(''.join(
        f'{u}\t{i}\t{(u + i) % 5 + 1}\t{1000 + 10 * i}\n'
        for u in (1, 2, 10) for i in (1, 2, 3, 4)))
    flags = ['|'.join('1' if k == g else '0' for k in range(19))
             for g in (0, 5, 18, 7)]
    (tmp_path / 'u.item').write_bytes(''.join(
        f'{i}|Caf\u00e9 {i} (1995)|01-Jan-1995||http://x|{flags[i - 1]}\n'
        for i in (1, 2, 3, 4)).encode('latin-1'))
    num_users, num_items, splits, feats, _ = read_grouplens(str(tmp_path))
    assert (num_users, num_items) == (3, 4)
    assert list(feats) == ['genre'] and feats['genre'].shape == (4, 19)
    assert feats['genre'][1, 5] == 1 and feats['genre'].sum() == 4
    users, items = read_id_tokens(
        str(tmp_path / SPLIT_DIR / 'u.random-80-10-10.seed0'))
    assert users == ['1', '2', '10'] and items == ['1', '2', '3', '4']
    (tmp_path / 'u.item').write_text('1|x|y\n')
    with pytest.raises(DataError, match=r"u.item, line 1: expected 24 '\|'-"):
        read_grouplens(str(tmp_path))
