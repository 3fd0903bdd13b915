from typing import Optional

from torch_geometric.data import HeteroData

from .multimodal import MultimodalRecDataset
from .synthetic import synthetic_multimodal
from .tiktok import TikTok, default_tiktok_root

DATASETS = ('synthetic', 'tiktok', 'mmssl', 'diffmm', 'mmrec')


def load_dataset(name: str, root: Optional[str] = None,
                 force_reload: bool = False,
                 inter: Optional[str] = None) -> HeteroData:
    r"""The :class:`HeteroData` of a dataset by name: ``"synthetic"`` (the
    embedded generator, no files), ``"tiktok"`` (``root`` defaults to
    ``$PYG_MMSSL_TIKTOK`` or ``../shared/data/tiktok``), or a folder in the
    ``"mmssl"``, ``"diffmm"`` or ``"mmrec"`` format (for ``"mmrec"``,
    ``inter`` names the ``<inter>.inter`` file to read)."""
    if inter is not None and name != 'mmrec':
        raise ValueError(f"--inter applies to the mmrec format only, not "
                         f"'{name}'")
    if name == 'synthetic':
        return synthetic_multimodal()
    if name == 'tiktok':
        return TikTok(root, force_reload=force_reload)[0]
    if name in ('mmssl', 'diffmm', 'mmrec'):
        if root is None:
            raise ValueError(f"dataset '{name}' reads files: pass --root DIR")
        return MultimodalRecDataset(root, name, name=inter,
                                    force_reload=force_reload)[0]
    raise ValueError(f"unknown dataset '{name}', expected one of {DATASETS}")


__all__ = [
    'DATASETS',
    'MultimodalRecDataset',
    'TikTok',
    'default_tiktok_root',
    'load_dataset',
    'synthetic_multimodal',
]
