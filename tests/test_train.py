import json

import pytest
import torch

from pyg_mmssl.nn.models import LightGCN
from pyg_mmssl.train import TrainConfig, Trainer


def make_trainer(data, out=None, **kw):
    torch.manual_seed(0)
    model = LightGCN.from_data(data, embedding_dim=16, num_layers=2)
    options = dict(batch_size=64, lr=5e-3, patience=100, seed=7,
                   device='cpu', quiet=True)
    options.update(kw)
    cfg = TrainConfig(**options)
    return Trainer(model, data, cfg, out=out)


def test_training_improves_and_reports(tiny_data, tmp_path, device):
    trainer = make_trainer(tiny_data, out=str(tmp_path), epochs=8,
                           device=str(device))
    before = trainer.evaluate('val')['recall@20']
    result = trainer.fit()
    assert result['epochs_run'] == 8
    assert 1 <= result['best_epoch'] <= 8
    assert result['val']['recall@20'] > before
    assert result['peak_memory_mb'] > 0 and result['seconds_per_epoch'] > 0
    on_disk = json.loads((tmp_path / 'metrics.json').read_text())
    assert on_disk['test'] == pytest.approx(result['test'])
    history = json.loads((tmp_path / 'history.json').read_text())
    assert [h['epoch'] for h in history] == list(range(1, 9))
    assert {'loss', 'bpr', 'reg', 'val'} <= set(history[0])
    # Best-epoch model is what is reported: its val metric is the best seen.
    best = max(h['val']['recall@20'] for h in history)
    assert result['val']['recall@20'] == pytest.approx(best)
    assert {p.name for p in tmp_path.iterdir()} == {
        'metrics.json', 'history.json', 'last.pt', 'best.pt'}


def test_early_stopping(tiny_data):
    # With lr 0 nothing improves after the first evaluation.
    trainer = make_trainer(tiny_data, epochs=200, patience=3, lr=0.0)
    result = trainer.fit()
    assert result['best_epoch'] == 1
    assert result['epochs_run'] == 4 and result['early_stopped']


def test_resume_matches_uninterrupted_run(tiny_data, tmp_path, device):
    full = make_trainer(tiny_data, out=str(tmp_path / 'full'), epochs=6,
                        device=str(device)).fit()
    make_trainer(tiny_data, out=str(tmp_path / 'part'), epochs=3,
                 device=str(device)).fit()
    resumed = make_trainer(tiny_data, out=str(tmp_path / 'part'), epochs=6,
                           device=str(device)).fit(resume=True)
    assert resumed['epochs_run'] == 6
    assert resumed['best_epoch'] == full['best_epoch']
    for split in ('val', 'test'):
        for key, value in full[split].items():
            assert resumed[split][key] == pytest.approx(value, abs=1e-6), key


def test_resume_without_checkpoint(tiny_data, tmp_path):
    with pytest.raises(FileNotFoundError, match="no checkpoint"):
        make_trainer(tiny_data, out=str(tmp_path), epochs=1).fit(resume=True)


def test_config_validation():
    with pytest.raises(ValueError, match="epochs must be positive"):
        TrainConfig(epochs=0)
    with pytest.raises(ValueError, match="unknown optimizer"):
        TrainConfig(optimizer='sgd')
    with pytest.raises(ValueError, match="CUDA is not available"):
        if not torch.cuda.is_available():
            Trainer(None, None, TrainConfig(device='cuda'))
        else:
            raise ValueError("CUDA is not available (skipped: CUDA present)")


def to_old_critic_layout(path):
    # A checkpoint as written before the critic stored W1^T: its first layer
    # as torch.nn.Linear's ``weight`` [h1, I], Adam's state alike.
    ckpt = torch.load(path, weights_only=True)
    key = 'discriminator.input.weight_t'
    weight_t = ckpt['model'].pop(key)
    ckpt['model']['discriminator.input.weight'] = weight_t.t().contiguous()
    if 'd_optimizer' in ckpt:
        for state in ckpt['d_optimizer']['state'].values():
            for name, value in state.items():
                if value.shape == weight_t.shape:
                    state[name] = value.t().contiguous()
    torch.save(ckpt, path)


@pytest.mark.parametrize('old_layout', [False, True])
def test_mmssl_resume_matches_uninterrupted_run(tiny_data, tmp_path,
                                                old_layout, device):
    from pyg_mmssl.nn.models import MMSSL

    def trainer(out, epochs):
        torch.manual_seed(0)
        model = MMSSL.from_data(tiny_data, embedding_dim=16, topk_rate=0.1,
                                refresh_every=2, critic='lowrank')
        cfg = TrainConfig(epochs=epochs, batch_size=128, seed=5,
                          device=str(device), quiet=True, patience=100)
        return Trainer(model, tiny_data, cfg, out=str(out))

    full_trainer = trainer(tmp_path / 'full', 4)
    full = full_trainer.fit()
    trainer(tmp_path / 'part', 2).fit()
    if old_layout:
        for name in ('last.pt', 'best.pt'):
            to_old_critic_layout(tmp_path / 'part' / name)
    t = trainer(tmp_path / 'part', 4)
    resumed = t.fit(resume=True)
    for split in ('val', 'test'):
        for key, value in full[split].items():
            assert resumed[split][key] == pytest.approx(value, abs=1e-5), key
    # The reported model is the best epoch's, learned graphs and step count
    # included.
    assert int(t.model.num_steps) == resumed['best_epoch'] * len(t.sampler)
    # The whole model matches, critic included: that checks the critic's
    # resumed optimiser state, which the metrics barely show.
    expected = full_trainer.model.state_dict()
    for key, value in t.model.state_dict().items():
        assert torch.allclose(value.float(), expected[key].float(),
                              atol=1e-6), key


def test_resume_from_unreadable_checkpoint(tiny_data, tmp_path):
    (tmp_path / 'last.pt').write_bytes(b'torn')
    with pytest.raises(ValueError, match="is not a checkpoint this version "
                       "can resume"):
        make_trainer(tiny_data, out=str(tmp_path), epochs=1).fit(resume=True)
