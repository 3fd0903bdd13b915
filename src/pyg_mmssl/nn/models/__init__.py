from .base import RecEmbedding, Recommender
from .bm3 import BM3, BM3Embedding
from .freedom import FREEDOM
from .lightgcn import LightGCN
from .mmgcn import MMGCN
from .mmssl import MMSSL, MMSSLEmbedding
from .mostpop import MostPop

MODELS = {
    'bm3': BM3,
    'freedom': FREEDOM,
    'lightgcn': LightGCN,
    'mmgcn': MMGCN,
    'mmssl': MMSSL,
    'mostpop': MostPop,
}

__all__ = [
    'RecEmbedding',
    'Recommender',
    'LightGCN',
    'MMGCN',
    'MMSSL',
    'MMSSLEmbedding',
    'FREEDOM',
    'BM3',
    'BM3Embedding',
    'MostPop',
    'MODELS',
]
