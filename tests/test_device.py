r"""CPU against CUDA: the same weights give the same embeddings and metrics,
and a run trained on the GPU is evaluated on the CPU. Skipped without a CUDA
device; tests taking the ``device`` fixture cover the rest on each device."""
import copy
import json

import pytest
import torch

from pyg_mmssl.cli import main
from pyg_mmssl.data import split_edge_index, to_csr
from pyg_mmssl.metrics import evaluate
from pyg_mmssl.nn.models import BM3, FREEDOM, MMGCN, MMSSL, LightGCN

MODELS = {
    'bm3': lambda data: BM3.from_data(data, embedding_dim=16),
    'freedom': lambda data: FREEDOM.from_data(data, embedding_dim=16),
    'lightgcn': lambda data: LightGCN.from_data(data, embedding_dim=16),
    'mmgcn': lambda data: MMGCN.from_data(data, embedding_dim=16),
    'mmssl': lambda data: MMSSL.from_data(data, embedding_dim=16, heads=4,
                                          topk_rate=0.1),
}


@pytest.mark.parametrize('name', list(MODELS))
def test_same_embeddings_and_metrics_on_cpu_and_cuda(tiny_data, gpu, name):
    torch.manual_seed(0)
    cpu = MODELS[name](tiny_data).double()
    if name == 'mmssl':  # learned graphs that differ from the training graph
        with torch.no_grad():
            out = cpu()
        cpu.refresh_graphs(out)
    cuda = copy.deepcopy(cpu).to(gpu)
    cpu.eval(), cuda.eval()
    a, b = cpu.get_embedding(), cuda.get_embedding()
    assert b.user.device.type == 'cuda'
    torch.testing.assert_close(a.user, b.user.cpu(), rtol=1e-9, atol=1e-12)
    torch.testing.assert_close(a.item, b.item.cpu(), rtol=1e-9, atol=1e-12)
    U, I = cpu.num_users, cpu.num_items
    test = to_csr(split_edge_index(tiny_data, 'test'), U, I)
    train = to_csr(split_edge_index(tiny_data, 'train'), U, I)
    on_cpu = evaluate(a.user, a.item, test, train, chunk_size=7)
    on_gpu = evaluate(b.user, b.item, test, train, chunk_size=7)
    # Same rankings; the metrics' float32 sums round differently (seen:
    # 1.5e-8 on an H200).
    assert on_gpu == pytest.approx(on_cpu, abs=1e-6)


def test_cuda_run_evaluates_on_cpu(tmp_path, gpu, capsys):
    out = tmp_path / 'mmssl'
    assert main(['train', '--model', 'mmssl', '--dataset', 'synthetic',
                 '--epochs', '2', '--embedding-dim', '16', '--quiet',
                 '--device', 'cuda', '--out', str(out)]) == 0
    metrics = json.loads((out / 'metrics.json').read_text())
    assert metrics['peak_memory_mb'] > 0
    capsys.readouterr()
    assert main(['evaluate', '--checkpoint', str(out / 'best.pt'), '--json',
                 '--device', 'cpu']) == 0
    res = json.loads(capsys.readouterr().out)
    # float32 scores from CPU and GPU kernels: ties may break differently.
    for key in ('recall@20', 'ndcg@20'):
        assert res['test'][key] == pytest.approx(metrics['test'][key],
                                                 abs=2e-3), key
