r"""Loading a data folder never runs code: DiffMM matrix pickles are read
through an allowlist of the few globals a ``scipy.sparse`` matrix of numbers
needs, and the processed cache holds only tensors and plain values, loaded with
``weights_only=True``."""
import logging
import os
import pickle
import shutil
import struct
from functools import reduce

import numpy as np
import pytest
import scipy.sparse as sp
import torch
from torch_geometric.data import InMemoryDataset

from pyg_mmssl.data import DataError
from pyg_mmssl.data.graph import EDGE
from pyg_mmssl.data.formats import load_sparse_pickle
from pyg_mmssl.datasets import MultimodalRecDataset

SPLITS = {'trnMat': [(0, 0), (0, 1), (1, 2), (2, 3), (3, 4)],
          'valMat': [(0, 2), (1, 3)], 'tstMat': [(2, 4), (3, 1)]}
REFUSAL = ("a DiffMM matrix file may only hold scipy.sparse matrices of "
           "numbers")


def write_diffmm(root, **splits):
    r"""A 4 x 5 DiffMM folder; ``splits`` replaces some of :obj:`SPLITS`."""
    for name, pairs in {**SPLITS, **splits}.items():
        u, i = zip(*pairs)
        mat = sp.coo_matrix((np.ones(len(u)), (u, i)), shape=(4, 5))
        (root / f'{name}.pkl').write_bytes(pickle.dumps(mat))
    for name, dim in (('image', 4), ('text', 3)):
        np.save(root / f'{name}_feat.npy',
                np.arange(5 * dim, dtype=np.float32).reshape(5, dim))


def _unicode(text: str) -> bytes:
    raw = text.encode()
    return pickle.BINUNICODE + struct.pack('<I', len(raw)) + raw


def call_pickle(module: str, name: str, *args) -> bytes:
    r"""Protocol-4 pickle bytes that call ``module.name(*args)`` on load, for
    string and empty-dict arguments. Written opcode by opcode, since
    ``__reduce__`` cannot name a dotted global reached through attributes;
    ``STACK_GLOBAL`` (unlike ``GLOBAL``) may."""
    arg = {str: _unicode, dict: lambda d: pickle.EMPTY_DICT}
    return (pickle.PROTO + b'\x04' + _unicode(module) + _unicode(name)
            + pickle.STACK_GLOBAL + pickle.MARK
            + b''.join(arg[type(a)](a) for a in args) + pickle.TUPLE
            + pickle.REDUCE + pickle.STOP)


def numpy_path_to_system() -> str:
    r"""An attribute path from the ``numpy`` module to :func:`os.system`
    through modules numpy imports (numpy 2: ``lib._utils_impl``)."""
    for path in ('lib._utils_impl.os.system', 'lib.utils.os.system',
                 'testing._private.utils.os.system'):
        try:
            if reduce(getattr, path.split('.'), np) is os.system:
                return path
        except AttributeError:
            continue
    pytest.skip("no attribute path from numpy to os.system in this numpy")


def payloads(marker):
    shell = f'echo pwned > {marker}'
    python = f'open({str(marker)!r}, "w").close()'
    dotted = numpy_path_to_system()
    return {
        # (a) the classic.
        'os.system': (pickle.dumps(_Payload('system', marker)),
                      f'{os.system.__module__}.system'),
        # (b) a function inside numpy that exec()s a string.
        'numpy exec': (call_pickle('numpy.testing._private.utils',
                                   'runstring', python, {}),
                       'numpy.testing._private.utils.runstring'),
        # (c) a dotted name walking from an admitted module to os.system.
        'dotted': (call_pickle('numpy', dotted, shell), f'numpy.{dotted}'),
    }


class _Payload:
    r"""Pickles as a call that creates ``marker``, run on unpickling."""
    def __init__(self, how: str, marker):
        self.how, self.marker = how, str(marker)

    def __reduce__(self):
        if self.how == 'system':
            return os.system, (f'echo pwned > {self.marker}', )
        return open, (self.marker, 'w')


# DiffMM matrix pickles #######################################################


@pytest.mark.parametrize('kind', ['os.system', 'numpy exec', 'dotted'])
def test_code_running_matrix_pickles_are_refused(tmp_path, kind):
    marker = tmp_path / 'marker'
    raw, name = payloads(marker)[kind]
    path = tmp_path / 'valMat.pkl'
    path.write_bytes(raw)
    with pytest.raises(DataError) as e:
        load_sparse_pickle(str(path))
    assert str(e.value) == (f"{path}: refusing to load global '{name}': "
                            f"{REFUSAL}")
    assert not marker.exists()

    write_diffmm(tmp_path)  # through the dataset, too
    path.write_bytes(raw)
    with pytest.raises(DataError, match=f"valMat.pkl: refusing to load "
                       f"global '{name}'"):
        MultimodalRecDataset(str(tmp_path), 'diffmm')
    assert not marker.exists()


def test_object_arrays_are_refused(tmp_path):
    mat = sp.coo_matrix((np.ones(2), ([0, 1], [1, 2])), shape=(2, 3))
    mat.data = np.array([1, 2], dtype=object)  # would carry pickled objects
    path = tmp_path / 'trnMat.pkl'
    path.write_bytes(pickle.dumps(mat))
    with pytest.raises(DataError) as e:
        load_sparse_pickle(str(path))
    assert str(e.value) == (f"{path}: refusing to load an array of dtype "
                            f"object: {REFUSAL}")


@pytest.mark.parametrize('attr,value,msg', [
    ('tocoo', [1, 2], "refusing to load a list attribute: " + REFUSAL),
    ('indptr', np.array([0, 5, 1]), "corrupted csr_matrix (ValueError: "),
])
def test_odd_matrix_internals_are_a_data_error(tmp_path, attr, value, msg):
    mat = sp.csr_matrix(np.eye(2))
    setattr(mat, attr, value)
    path = tmp_path / 'trnMat.pkl'
    path.write_bytes(pickle.dumps(mat))
    with pytest.raises(DataError) as e:
        load_sparse_pickle(str(path))
    assert str(e.value).startswith(f"{path}: {msg}")
    assert '\n' not in str(e.value)


@pytest.mark.parametrize('fmt', ['coo', 'csr', 'csc', 'bsr', 'dia'])
@pytest.mark.parametrize('protocol', range(pickle.HIGHEST_PROTOCOL + 1))
def test_sparse_matrices_of_numbers_load(tmp_path, fmt, protocol):
    dense = np.array([[0, 1.5, 0], [2, 0, 0]])
    for cls in (sp.coo_matrix, sp.coo_array):
        for dtype in (np.float64, np.float32, np.int32, np.int64, bool):
            mat = cls(dense.astype(dtype)).asformat(fmt)
            path = tmp_path / 'm.pkl'
            path.write_bytes(pickle.dumps(mat, protocol=protocol))
            out = load_sparse_pickle(str(path))
            assert out.format == 'coo' and out.dtype == dtype
            assert np.array_equal(out.toarray(), dense.astype(dtype))


# The processed cache #########################################################


def flat(data):
    r"""Every attribute of every store, with tensors as (dtype, list)."""
    out = {}
    for store, attrs in data.to_dict().items():
        for key, value in attrs.items():
            out[(store, key)] = ((value.dtype, value.tolist())
                                 if torch.is_tensor(value) else value)
    return out


def fresh(root):
    r"""The data of ``root`` built from the raw files, without a cache."""
    return MultimodalRecDataset(str(root), 'diffmm', processed_dir=str(
        root.parent / f'{root.name}-fresh'))[0]


def cache_files(ds):
    return sorted(os.listdir(ds.processed_dir))


def test_cache_round_trips_exactly(tmp_path):
    write_diffmm(tmp_path)
    built = MultimodalRecDataset(str(tmp_path), 'diffmm')[0]
    cached = MultimodalRecDataset(str(tmp_path), 'diffmm')[0]
    assert flat(cached) == flat(built)
    assert cached.modalities == ['image', 'text']
    assert cached['user'].num_nodes == 4 and cached['item'].num_nodes == 5


def test_only_the_cache_file_is_written(tmp_path):
    write_diffmm(tmp_path)
    ds = MultimodalRecDataset(str(tmp_path), 'diffmm')
    assert cache_files(ds) == [os.path.basename(ds.processed_paths[0])]


@pytest.mark.parametrize('force_reload', [False, True])
@pytest.mark.parametrize('form', ['torch.save', 'pickle'])
def test_crafted_processed_folder_never_runs(tmp_path, caplog, monkeypatch,
                                             force_reload, form):
    root = tmp_path / 'data'
    root.mkdir()
    write_diffmm(root)
    ds = MultimodalRecDataset(str(root), 'diffmm')
    expected = flat(ds[0])
    marker = tmp_path / 'marker'
    names = set(cache_files(ds)) | {
        'pre_transform.pt', 'pre_filter.pt', 'data.pt', 'data_diffmm.pt',
        'data_diffmm_0123456789abcdef.pt',  # the names caches had before
        os.path.basename(ds.processed_paths[0])}
    for name in names:
        path = os.path.join(ds.processed_dir, name)
        if form == 'pickle':  # torch.load reads plain pickles, too
            with open(path, 'wb') as f:
                pickle.dump(_Payload('open', marker), f, protocol=2)
        else:
            torch.save(_Payload('open', marker), path)
    loads = []
    real_load = torch.load

    def load(*args, **kwargs):
        loads.append(kwargs.get('weights_only'))
        return real_load(*args, **kwargs)

    monkeypatch.setattr(torch, 'load', load)
    with caplog.at_level(logging.WARNING):
        data = MultimodalRecDataset(str(root), 'diffmm',
                                    force_reload=force_reload)[0]
    assert not marker.exists()
    assert all(weights_only is True for weights_only in loads), loads
    assert flat(data) == expected
    if not force_reload:
        assert 'unreadable' in caplog.text and 'rebuilding' in caplog.text


def test_truncated_cache_is_rebuilt(tmp_path, caplog):
    write_diffmm(tmp_path)
    ds = MultimodalRecDataset(str(tmp_path), 'diffmm')
    path = ds.processed_paths[0]
    with open(path, 'rb') as f:
        head = f.read(os.path.getsize(path) // 2)
    with open(path, 'wb') as f:
        f.write(head)
    with caplog.at_level(logging.WARNING):
        data = MultimodalRecDataset(str(tmp_path), 'diffmm')[0]
    assert 'truncated or unreadable' in caplog.text
    assert flat(data) == flat(fresh(tmp_path))
    caplog.clear()
    MultimodalRecDataset(str(tmp_path), 'diffmm')  # the rebuilt cache is used
    assert caplog.text == ''


def test_stale_cache_is_rebuilt(tmp_path, caplog):
    write_diffmm(tmp_path)
    MultimodalRecDataset(str(tmp_path), 'diffmm')
    write_diffmm(tmp_path, valMat=SPLITS['valMat'] + [(2, 0)])
    with caplog.at_level(logging.WARNING):
        data = MultimodalRecDataset(str(tmp_path), 'diffmm')[0]
    assert 'stale' in caplog.text
    assert data[EDGE].val_edge_index.size(1) == 3


def test_cache_of_other_files_is_not_used(tmp_path, caplog):
    a, b = tmp_path / 'a', tmp_path / 'b'
    a.mkdir()
    b.mkdir()
    write_diffmm(a)
    write_diffmm(b, trnMat=SPLITS['trnMat'][:3])
    ds_a = MultimodalRecDataset(str(a), 'diffmm')
    ds_b = MultimodalRecDataset(str(b), 'diffmm')
    shutil.copy(ds_a.processed_paths[0], ds_b.processed_paths[0])
    with caplog.at_level(logging.WARNING):
        data = MultimodalRecDataset(str(b), 'diffmm')[0]
    assert 'stale' in caplog.text
    assert data[EDGE].edge_index.size(1) == 3


@pytest.mark.parametrize('kind', ['tensors', 'string', 'pyg', 'version'])
def test_foreign_cache_is_rebuilt(tmp_path, caplog, kind):
    write_diffmm(tmp_path)
    ds = MultimodalRecDataset(str(tmp_path), 'diffmm')
    path = ds.processed_paths[0]
    if kind == 'pyg':  # InMemoryDataset's own format, as caches were before
        InMemoryDataset.save([ds[0]], path)
    elif kind == 'version':
        cache = torch.load(path, weights_only=True)
        torch.save({**cache, 'version': -1}, path)
    else:
        torch.save({'tensors': {'edge_index': torch.zeros(2, 3).long()},
                    'string': 'not a cache'}[kind], path)
    with caplog.at_level(logging.WARNING):
        data = MultimodalRecDataset(str(tmp_path), 'diffmm')[0]
    assert 'foreign' in caplog.text
    assert flat(data) == flat(fresh(tmp_path))
