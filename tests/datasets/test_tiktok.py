import pytest
import torch

from pyg_mmssl.data import statistics
from pyg_mmssl.datasets import TikTok


def test_tiktok(tiktok_root):
    data = TikTok(tiktok_root)[0]
    stats = statistics(data)
    assert stats['users'] == 9308 and stats['items'] == 6710
    assert stats['train_interactions'] == 59541
    assert stats['val_interactions'] == 3051
    assert stats['test_interactions'] == 6130
    assert stats['modalities'] == {'audio': 128, 'image': 128}
    assert data['item']['image'].dtype == torch.float32


def test_tiktok_missing_file_names_it(tmp_path):
    (tmp_path / 'trnMat.pkl').write_bytes(b'')
    with pytest.raises(FileNotFoundError, match=r"valMat.pkl.*HKUDS/DiffMM"):
        TikTok(str(tmp_path))
