import json
import os.path as osp
import sys

import pytest

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))


@pytest.fixture
def suite():
    sys.path.insert(0, osp.join(ROOT, 'benchmarks'))
    try:
        import suite
        yield suite
    finally:
        sys.path.pop(0)


def test_suite_smoke(suite, tmp_path):
    # 1 seed, 1 epoch on the tiny synthetic dataset: checks the files only.
    out = tmp_path / 'bench'
    suite.main(['--dataset', 'synthetic', '--seeds', '0', '--epochs', '1',
                '--critic', 'lowrank', '--device', 'cpu', '--out', str(out)])
    result = json.loads((out / 'results.json').read_text())
    assert [r['model'] for r in result['runs']] == ['lightgcn', 'mmgcn',
                                                    'mmssl']
    for run in result['runs']:
        assert run['epochs_run'] == 1 and run['peak_memory_mb'] > 0
        assert {'recall@20', 'ndcg@50', 'precision@10', 'hit@20'} <= set(
            run['test'])
        assert len(run['curve']) == 1
    assert result['environment']['torch'] and result['command']
    table = (out / 'results.md').read_text()
    assert table.count('\n| ') == 4  # header + 3 models
    png = (out / 'val_recall.png').read_bytes()
    assert png[:8] == b'\x89PNG\r\n\x1a\n'
    # A second call reuses finished runs instead of training again.
    mtime = osp.getmtime(out / 'runs' / 'mmssl-seed0' / 'metrics.json')
    suite.main(['--dataset', 'synthetic', '--seeds', '0', '--epochs', '1',
                '--models', 'mmssl', '--device', 'cpu', '--out', str(out)])
    assert osp.getmtime(out / 'runs' / 'mmssl-seed0' /
                        'metrics.json') == mtime
