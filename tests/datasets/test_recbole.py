import os

import numpy as np
import pytest

from pyg_mmssl.data.graph import split_edge_index
from pyg_mmssl.datasets import RecBoleDataset, load_dataset

USERS = ('u1', 'u2', 'u3', 'u4')
ITEMS = ('i1', 'i2', 'i3', 'i4', 'i5')


def write_recbole(root, name='toy', rows=None):
    rows = rows or [f'{u}\t{i}\t{1 + (a + b) % 5}\t{10 * b}'
                    for a, u in enumerate(USERS) for b, i in enumerate(ITEMS)]
    (root / f'{name}.inter').write_text(
        'user_id:token\titem_id:token\trating:float\ttimestamp:float\n'
        + '\n'.join(rows) + '\n')
    (root / f'{name}.item').write_text(
        'item_id:token\tgenre:token_seq\n'
        + ''.join(f'{i}\t{"a b" if k % 2 else "c"}\n'
                  for k, i in enumerate(ITEMS)))


def write_grouplens(root):
    (root / 'u.data').write_text(''.join(
        f'{u}\t{i}\t{(u * i) % 5 + 1}\t{100 * i}\n'
        for u in range(1, 5) for i in range(1, 6)))
    (root / 'u.item').write_bytes(''.join(
        f'{i}|T\u00eftle {i} (1995)|01-Jan-1995||http://x|'
        + '|'.join('1' if k == i else '0' for k in range(19)) + '\n'
        for i in range(1, 6)).encode('latin-1'))


def test_cache_and_split_are_reused(tmp_path):
    write_recbole(tmp_path)
    ds = RecBoleDataset(str(tmp_path))
    data = ds[0]
    assert data['user'].num_nodes == 4 and data.modalities == ['genre']
    cached = list((tmp_path / 'processed').glob('data_recbole_toy_*.pt'))
    split = tmp_path / 'pyg_mmssl_splits' / 'toy.random-80-10-10.seed0'
    assert len(cached) == 1 and (split / 'split.json').is_file()
    stamps = [p.stat().st_mtime_ns for p in (cached[0], split / 'train.json')]
    again = RecBoleDataset(str(tmp_path))[0]
    assert [p.stat().st_mtime_ns for p in (cached[0], split / 'train.json')
            ] == stamps  # neither re-processed nor re-split
    for s in ('train', 'val', 'test'):
        assert split_edge_index(data, s).tolist() == \
            split_edge_index(again, s).tolist()
    # Built or read from the cache, the data names its users and items.
    for d in (data, again):
        assert len(d['user'].token) == 4 and \
            len(d['item'].token) == d['item'].num_nodes
        assert d['item'].token == sorted(d['item'].token)
    # Other options: their own cache and split.
    RecBoleDataset(str(tmp_path), split='temporal', item_fields=[])
    assert len(list((tmp_path / 'processed').glob('*.pt'))) == 2
    assert (tmp_path / 'pyg_mmssl_splits' / 'toy.temporal-80-10-10').is_dir()
    # A deleted split is written again (and the cache rebuilt).
    for f in split.iterdir():
        f.unlink()
    data = RecBoleDataset(str(tmp_path))[0]
    assert (split / 'split.json').is_file()
    assert split_edge_index(data, 'test').tolist() == \
        split_edge_index(again, 'test').tolist()


def test_read_only_root_splits_into_the_cache(tmp_path):
    raw = tmp_path / 'raw'
    raw.mkdir()
    write_recbole(raw)
    os.chmod(raw, 0o555)
    try:
        ds = RecBoleDataset(str(raw))
        assert not (raw / 'pyg_mmssl_splits').exists()
        assert ds.split_dir.startswith(str(tmp_path / 'cache'))
    finally:
        os.chmod(raw, 0o755)


def test_load_dataset_options(tmp_path):
    write_recbole(tmp_path)
    write_recbole(tmp_path, name='other')
    with pytest.raises(ValueError, match='--name'):
        load_dataset('recbole', str(tmp_path))  # two .inter files
    data = load_dataset('recbole', str(tmp_path), options={
        'name': 'other', 'rating_threshold': 3, 'split_seed': 3,
        'item_fields': None})
    assert split_edge_index(data, 'train').size(1) == 4  # 1 of 3 per user
    with pytest.raises(ValueError, match='--split applies to the recbole and '
                       'ml-100k datasets only'):
        load_dataset('mmrec', str(tmp_path), options={'split': 'temporal'})
    with pytest.raises(ValueError, match="unknown split 'time'"):
        load_dataset('recbole', str(tmp_path), options={'split': 'time'})


def test_ml100k_reads_grouplens_files(tmp_path, monkeypatch):
    write_grouplens(tmp_path)
    monkeypatch.setenv('PYG_MMSSL_ML100K', str(tmp_path))
    data = load_dataset('ml-100k')
    assert data['user'].num_nodes == 4 and data['item'].num_nodes == 5
    assert data.modalities == ['genre']
    assert np.array_equal(data['item']['genre'][:, 1:6].numpy(), np.eye(5))
    with pytest.raises(ValueError, match='this ml-100k folder has GroupLens'):
        load_dataset('ml-100k', options={'name': 'x'})
    monkeypatch.delenv('PYG_MMSSL_ML100K')
    with pytest.raises(ValueError, match='PYG_MMSSL_ML100K'):
        load_dataset('ml-100k')
    with pytest.raises(FileNotFoundError, match='neither ml-100k.inter'):
        load_dataset('ml-100k', str(tmp_path / 'processed'))
