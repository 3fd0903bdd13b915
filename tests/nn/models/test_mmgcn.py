import pytest
import torch

from pyg_mmssl.nn.models import MMGCN
from pyg_mmssl.train import TrainConfig, Trainer

BATCH = (torch.tensor([0, 1, 2, 3]), torch.tensor([4, 5, 6, 7]),
         torch.tensor([8, 9, 10, 11]))


@pytest.mark.parametrize('combine', ['concat', 'add'])
def test_every_parameter_gets_a_gradient(tiny_data, combine, device):
    model = MMGCN.from_data(tiny_data, embedding_dim=8,
                            combine=combine).to(device)
    assert len(model.branches) == 2  # one per modality
    model.loss(*(t.to(device) for t in BATCH))['loss'].backward()
    for name, p in model.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name


def test_trains_and_uses_each_modality(tiny_data):
    torch.manual_seed(0)
    model = MMGCN.from_data(tiny_data, embedding_dim=16)
    trainer = Trainer(model, tiny_data, TrainConfig(
        epochs=5, batch_size=64, lr=5e-3, device='cpu', quiet=True))
    before = trainer.evaluate('val')['recall@20']
    assert trainer.fit()['val']['recall@20'] > before
    model.eval()
    emb = model.get_embedding().item
    model.feat_1.add_(1.0)
    assert not torch.allclose(model.get_embedding().item, emb)


def test_bad_arguments(tiny_data):
    with pytest.raises(ValueError, match="unknown combine"):
        MMGCN.from_data(tiny_data, combine='max')
    with pytest.raises(ValueError, match="at least one modality"):
        MMGCN.from_data(tiny_data, modalities=[])
