import os
from typing import Callable, Optional

from pyg_mmssl.datasets.multimodal import MultimodalRecDataset

TIKTOK_ENV = 'PYG_MMSSL_TIKTOK'
DEFAULT_TIKTOK_ROOT = '../shared/data/tiktok'


def default_tiktok_root() -> str:
    r"""``$PYG_MMSSL_TIKTOK``, else ``../shared/data/tiktok``."""
    return os.environ.get(TIKTOK_ENV, DEFAULT_TIKTOK_ROOT)


class TikTok(MultimodalRecDataset):
    r"""The TikTok micro-video dataset of the MMSSL / DiffMM papers (9,308
    users, 6,710 items; 59,541 / 3,051 / 6,130 train / validation / test
    interactions; 128-d image and 128-d audio item features), in the DiffMM
    release layout: ``trnMat.pkl``, ``valMat.pkl``, ``tstMat.pkl``,
    ``image_feat.npy``, ``audio_feat.npy``.

    Args:
        root (str, optional): Folder with the files. (default:
            ``$PYG_MMSSL_TIKTOK`` or ``../shared/data/tiktok``)
        processed_dir (str, optional): Where to cache processed data.
        transform (callable, optional): Applied to the data on access.
        force_reload (bool): Re-process even if a cache exists.
    """
    source_hint = ("get them from the HKUDS/DiffMM repository, folder "
                   "Datasets/tiktok (https://github.com/HKUDS/DiffMM)")
    modalities = ('image', 'audio')

    def __init__(self, root: Optional[str] = None,
                 processed_dir: Optional[str] = None,
                 transform: Optional[Callable] = None,
                 force_reload: bool = False):
        super().__init__(root or default_tiktok_root(), 'diffmm',
                         processed_dir=processed_dir, transform=transform,
                         force_reload=force_reload)

    @property
    def raw_file_names(self):
        return ['trnMat.pkl', 'valMat.pkl', 'tstMat.pkl'] + [
            f'{m}_feat.npy' for m in self.modalities]

    def __repr__(self) -> str:
        return f'TikTok({self.root})'
