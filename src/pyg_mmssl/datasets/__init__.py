from typing import Any, Dict, Optional

from torch_geometric.data import HeteroData

from .multimodal import MultimodalRecDataset
from .recbole import (RecBoleDataset, default_ml100k_root, ml100k_format,
                      ML100K_ENV, ML100K_NAME)
from .synthetic import synthetic_multimodal
from .tiktok import TikTok, default_tiktok_root

DATASETS = ('synthetic', 'tiktok', 'mmssl', 'diffmm', 'mmrec', 'recbole',
            'ml-100k')
# The options of the recbole and ml-100k loaders (RecBoleDataset's
# arguments), as the CLI's flags name them.
LOADER_OPTIONS = {'name': '--name', 'split': '--split',
                  'split_seed': '--split-seed',
                  'rating_threshold': '--rating-threshold',
                  'item_fields': '--item-fields'}


def load_dataset(name: str, root: Optional[str] = None,
                 force_reload: bool = False,
                 inter: Optional[str] = None,
                 options: Optional[Dict[str, Any]] = None) -> HeteroData:
    r"""The :class:`HeteroData` of a dataset by name: ``"synthetic"`` (the
    embedded generator, no files), ``"tiktok"`` (``root`` defaults to
    ``$PYG_MMSSL_TIKTOK`` or ``../shared/data/tiktok``), a folder in the
    ``"mmssl"``, ``"diffmm"`` or ``"mmrec"`` format (for ``"mmrec"``,
    ``inter`` names the ``<inter>.inter`` file to read), a folder of RecBole
    atomic files (``"recbole"``), or MovieLens-100K (``"ml-100k"``: RecBole's
    ``ml-100k.inter`` / ``.item`` or GroupLens' ``u.data`` / ``u.item``;
    ``root`` defaults to ``$PYG_MMSSL_ML100K``). ``options`` are the
    :class:`RecBoleDataset` arguments of :obj:`LOADER_OPTIONS` (``name``,
    ``split``, ``split_seed``, ``rating_threshold``, ``item_fields``), for
    ``"recbole"`` and ``"ml-100k"`` only."""
    options = {k: v for k, v in (options or {}).items() if v is not None}
    if inter is not None and name != 'mmrec':
        raise ValueError(f"--inter applies to the mmrec format only, not "
                         f"'{name}'")
    unknown = [k for k in options if k not in LOADER_OPTIONS]
    if unknown:
        raise ValueError(f"unknown loader option '{unknown[0]}', expected "
                         f"one of {list(LOADER_OPTIONS)}")
    if options and name not in ('recbole', 'ml-100k'):
        raise ValueError(f"{LOADER_OPTIONS[next(iter(options))]} applies to "
                         f"the recbole and ml-100k datasets only, not '{name}'")
    if name == 'synthetic':
        return synthetic_multimodal()
    if name == 'tiktok':
        return TikTok(root, force_reload=force_reload)[0]
    if name == 'ml-100k':
        root = root or default_ml100k_root()
        if root is None:
            raise ValueError(f"dataset 'ml-100k' reads files: pass --root DIR "
                             f"or set ${ML100K_ENV} (benchmarks/ml100k.py "
                             f"prepares a folder)")
        fmt = ml100k_format(root)
        if fmt == 'recbole':
            options.setdefault('name', ML100K_NAME)
        elif 'name' in options:
            raise ValueError("--name applies to RecBole files; this "
                             "ml-100k folder has GroupLens' u.data")
        return RecBoleDataset(root, fmt, force_reload=force_reload,
                              **options)[0]
    if name in ('mmssl', 'diffmm', 'mmrec', 'recbole'):
        if root is None:
            raise ValueError(f"dataset '{name}' reads files: pass --root DIR")
        if name == 'recbole':
            return RecBoleDataset(root, 'recbole', force_reload=force_reload,
                                  **options)[0]
        return MultimodalRecDataset(root, name, name=inter,
                                    force_reload=force_reload)[0]
    raise ValueError(f"unknown dataset '{name}', expected one of {DATASETS}")


__all__ = [
    'DATASETS',
    'LOADER_OPTIONS',
    'MultimodalRecDataset',
    'RecBoleDataset',
    'TikTok',
    'default_ml100k_root',
    'default_tiktok_root',
    'load_dataset',
    'synthetic_multimodal',
]
