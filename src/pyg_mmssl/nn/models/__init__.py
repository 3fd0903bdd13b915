from .base import RecEmbedding, Recommender, bpr_loss
from .lightgcn import LightGCN

MODELS = {
    'lightgcn': LightGCN,
}

__all__ = [
    'RecEmbedding',
    'Recommender',
    'bpr_loss',
    'LightGCN',
    'MODELS',
]
