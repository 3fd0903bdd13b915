from .base import RecEmbedding, Recommender
from .lightgcn import LightGCN
from .mmssl import MMSSL, MMSSLEmbedding

MODELS = {
    'lightgcn': LightGCN,
    'mmssl': MMSSL,
}

__all__ = [
    'RecEmbedding',
    'Recommender',
    'LightGCN',
    'MMSSL',
    'MMSSLEmbedding',
    'MODELS',
]
