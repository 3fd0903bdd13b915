from .base import RecEmbedding, Recommender
from .lightgcn import LightGCN
from .mmgcn import MMGCN
from .mmssl import MMSSL, MMSSLEmbedding

MODELS = {
    'lightgcn': LightGCN,
    'mmgcn': MMGCN,
    'mmssl': MMSSL,
}

__all__ = [
    'RecEmbedding',
    'Recommender',
    'LightGCN',
    'MMGCN',
    'MMSSL',
    'MMSSLEmbedding',
    'MODELS',
]
