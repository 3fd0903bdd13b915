r"""pyg_mmssl: multimodal self-supervised recommendation (MMSSL) and
baselines for PyTorch Geometric."""
from .data import BPRSampler, build_data
from .metrics import evaluate
from .nn import (MMGCN, MMSSL, LightGCN, MMGCNConv, MMSSLConv, RecEmbedding,
                 Recommender)
from .train import TrainConfig, Trainer

__version__ = '0.1.0'

__all__ = [
    'BPRSampler',
    'build_data',
    'evaluate',
    'LightGCN',
    'MMGCN',
    'MMGCNConv',
    'MMSSL',
    'MMSSLConv',
    'RecEmbedding',
    'Recommender',
    'TrainConfig',
    'Trainer',
]
