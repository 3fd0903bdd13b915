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


def test_lr_decay_per_epoch_and_on_resume(tiny_data, tmp_path):
    seen = []
    trainer = make_trainer(tiny_data, out=str(tmp_path), epochs=3,
                           lr=0.01, lr_decay=0.5)
    trainer.fit(on_epoch=lambda epoch, _: seen.append(
        trainer.optimizer.param_groups[0]['lr']))
    assert seen == pytest.approx([0.01, 0.005, 0.0025])
    resumed = make_trainer(tiny_data, out=str(tmp_path), epochs=4,
                           lr=0.01, lr_decay=0.5)
    resumed.fit(resume=True)
    assert resumed.optimizer.param_groups[0]['lr'] == pytest.approx(0.00125)
    floored = make_trainer(tiny_data, epochs=3, lr=0.01, lr_decay=0.5,
                           lr_min=0.004)
    floored.fit()
    assert floored.optimizer.param_groups[0]['lr'] == 0.004
    # Without decay the rate stays.
    plain = make_trainer(tiny_data, epochs=2, lr=0.01)
    plain.fit()
    assert plain.optimizer.param_groups[0]['lr'] == 0.01


def test_resume_without_checkpoint(tiny_data, tmp_path):
    with pytest.raises(FileNotFoundError, match="no checkpoint"):
        make_trainer(tiny_data, out=str(tmp_path), epochs=1).fit(resume=True)


def test_config_validation():
    with pytest.raises(ValueError, match="epochs must be positive"):
        TrainConfig(epochs=0)
    with pytest.raises(ValueError, match="unknown optimizer"):
        TrainConfig(optimizer='sgd')
    for decay in (0.0, 1.5):
        with pytest.raises(ValueError, match=r"lr_decay must be in \(0, 1\]"):
            TrainConfig(lr_decay=decay)
    with pytest.raises(ValueError, match=r"lr_min must be in \[0, lr\]"):
        TrainConfig(lr=1e-3, lr_min=2e-3)
    with pytest.raises(ValueError, match="CUDA is not available"):
        if not torch.cuda.is_available():
            Trainer(None, None, TrainConfig(device='cuda'))
        else:
            raise ValueError("CUDA is not available (skipped: CUDA present)")


def test_mmssl_resume_matches_uninterrupted_run(tiny_data, tmp_path, device):
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
    t = trainer(tmp_path / 'part', 4)
    resumed = t.fit(resume=True)
    for split in ('val', 'test'):
        for key, value in full[split].items():
            assert resumed[split][key] == pytest.approx(value, abs=1e-5), key
    # The step count, which times the refreshes, continues across resume.
    last = torch.load(tmp_path / 'part' / 'last.pt', weights_only=True)
    assert last['state']['step'] == 4 * len(t.sampler)
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


# Runs that must stop, and what they leave behind ###########################

def nan_at(trainer, epoch, step, term='bpr'):
    r"""Makes ``term`` of the loss NaN at ``(epoch, step)``."""
    loss = trainer.model.loss

    def patched(*args):
        terms = loss(*args)
        if trainer._position == (epoch, step):
            terms[term] = terms[term] * float('nan')
        return terms
    trainer.model.loss = patched


def test_non_finite_loss_stops_and_keeps_last_finite_state(tiny_data,
                                                           tmp_path):
    from pyg_mmssl.train import NonFiniteLoss
    trainer = make_trainer(tiny_data, out=str(tmp_path / 'run'), epochs=5)
    nan_at(trainer, epoch=2, step=3)
    with pytest.raises(NonFiniteLoss, match=r"loss term 'bpr' is nan at "
                       r"epoch 2, step 3 of \d+: training stopped; .*last.pt "
                       r"keeps epoch 1 .*try a lower --lr \(now 0.005\)"):
        trainer.fit()
    last = torch.load(tmp_path / 'run' / 'last.pt', weights_only=True)
    best = torch.load(tmp_path / 'run' / 'best.pt', weights_only=True)
    assert last['state']['epoch'] == 1 and best['epoch'] == 1
    # last.pt is exactly the state of a run that stopped after epoch 1.
    one = make_trainer(tiny_data, out=str(tmp_path / 'one'), epochs=1)
    one.fit()
    for key, value in one.model.state_dict().items():
        assert torch.isfinite(last['model'][key]).all(), key
        assert torch.equal(last['model'][key], value), key
    assert not (tmp_path / 'run' / 'metrics.json').exists()


def test_non_finite_loss_in_first_epoch_and_without_out(tiny_data):
    from pyg_mmssl.train import NonFiniteLoss
    trainer = make_trainer(tiny_data, epochs=2)
    nan_at(trainer, epoch=1, step=2, term='reg')
    before = {k: v.detach().clone()
              for k, v in trainer.model.named_parameters()}
    with pytest.raises(NonFiniteLoss, match="loss term 'reg' is nan at "
                       "epoch 1, step 2 .*no run files are written"):
        trainer.fit()
    # The non-finite loss never reached the weights: one step was taken.
    for key, value in trainer.model.named_parameters():
        assert torch.isfinite(value).all()
        assert not torch.equal(value, before[key])


def test_non_finite_critic_loss_is_not_stepped(tiny_data):
    from pyg_mmssl.nn.models import MMSSL
    from pyg_mmssl.train import NonFiniteLoss
    model = MMSSL.from_data(tiny_data, embedding_dim=8, topk_rate=0.1)
    trainer = Trainer(model, tiny_data, TrainConfig(device='cpu', quiet=True))
    critic = [p.detach().clone() for p in model.discriminator_parameters()]
    model.critic_loss = lambda user, out: torch.tensor(float('inf'),
                                                       requires_grad=True)
    with pytest.raises(NonFiniteLoss, match="loss term 'd' is inf"):
        trainer.update_critic(torch.tensor([0]), None)
    for before, p in zip(critic, model.discriminator_parameters()):
        assert torch.equal(before, p)


def test_non_finite_weights_stop_before_saving(tiny_data, tmp_path):
    from pyg_mmssl.train import NonFiniteLoss
    trainer = make_trainer(tiny_data, out=str(tmp_path), epochs=3)
    step = trainer.optimizer.step

    def poisoned_step():
        step()
        if trainer._position == (2, len(trainer.sampler)):
            with torch.no_grad():
                next(trainer.model.parameters())[0, 0] = float('inf')
    trainer.optimizer.step = poisoned_step
    with pytest.raises(NonFiniteLoss, match=r"weight '.+' became non-finite "
                       r"at epoch 2"):
        trainer.fit()
    last = torch.load(tmp_path / 'last.pt', weights_only=True)
    assert last['state']['epoch'] == 1
    assert all(torch.isfinite(v).all() for v in last['model'].values())


def test_loss_growth_warns_once(tiny_data, caplog):
    trainer = make_trainer(tiny_data, epochs=1)
    loss = trainer.model.loss

    def growing(*args):
        terms = loss(*args)
        if trainer._position[1] >= 3:
            terms['loss'] = terms['loss'] * 1e3
        return terms
    trainer.model.loss = growing
    trainer.fit()
    warnings = [r for r in caplog.records if 'the loss grew' in r.message]
    assert len(warnings) == 1
    assert 'epoch 1, step 3' in warnings[0].message


# Output folders and resuming ###############################################

@pytest.mark.parametrize('name', ['metrics.json', 'history.json', 'last.pt',
                                  'best.pt'])
def test_out_holding_a_run_file_is_refused(tiny_data, tmp_path, name):
    (tmp_path / name).write_text('mine')
    with pytest.raises(FileExistsError, match=f"already holds a run \\({name}"
                       r"\); pass --resume .*nothing was overwritten"):
        make_trainer(tiny_data, out=str(tmp_path), epochs=1).fit()
    assert (tmp_path / name).read_text() == 'mine'


def test_out_that_cannot_be_written(tiny_data, tmp_path):
    from pyg_mmssl.train import check_out_dir
    (tmp_path / 'file').write_text('mine')
    with pytest.raises(FileExistsError, match="'.*file' is a file"):
        check_out_dir(str(tmp_path / 'file'))
    with pytest.raises(OSError, match="cannot write to output folder "
                       "'.*file/run'"):
        check_out_dir(str(tmp_path / 'file' / 'run'))
    check_out_dir(str(tmp_path / 'new' / 'run'))  # created
    assert (tmp_path / 'new' / 'run').is_dir()
    assert (tmp_path / 'file').read_text() == 'mine'


def test_resume_with_other_model_options_is_refused(tiny_data, tmp_path):
    meta = {'model': 'lightgcn', 'dataset': 'tiny',
            'model_config': {'embedding_dim': 16, 'num_layers': 2}}
    first = make_trainer(tiny_data, out=str(tmp_path), epochs=1)
    first.meta = meta
    first.fit()
    for change, message in (
            ({'model_config': {'embedding_dim': 8, 'num_layers': 2}},
             "was trained with embedding_dim=16; this run asks for "
             "embedding_dim=8"),
            ({'model': 'mmgcn'}, "was trained with model 'lightgcn', this "
             "run has 'mmgcn'"),
            ({'dataset': 'other'}, "was trained with dataset 'tiny'")):
        again = make_trainer(tiny_data, out=str(tmp_path), epochs=2)
        again.meta = {**meta, **change}
        with pytest.raises(ValueError, match=message):
            again.fit(resume=True)


def test_resume_with_corrupt_best_checkpoint(tiny_data, tmp_path):
    make_trainer(tiny_data, out=str(tmp_path), epochs=1).fit()
    (tmp_path / 'best.pt').write_bytes(b'torn')
    with pytest.raises(ValueError, match=r"best.pt' is not a pyg-mmssl "
                       r"checkpoint \(unreadable") as info:
        make_trainer(tiny_data, out=str(tmp_path), epochs=2).fit(resume=True)
    assert '\n' not in str(info.value)


def test_config_rejects_bad_ks_and_devices():
    from pyg_mmssl.device import resolve_device
    with pytest.raises(ValueError, match=r"ks must be positive cut-offs, got "
                       r"\[0, 20\]"):
        TrainConfig(ks=(0, 20))
    for device in ('gpu', 'cuda:x', 'cpu:3', 'meta'):
        with pytest.raises(ValueError, match=f"device '{device}': expected "
                           f"'auto', 'cpu', 'cuda' or 'cuda:N'"):
            TrainConfig(device=device)
    count = torch.cuda.device_count()
    with pytest.raises(ValueError, match="CUDA is not available|CUDA "
                       "device"):
        resolve_device(f'cuda:{count}')
