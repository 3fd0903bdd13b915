from .conv import MMSSLConv, bipartite_norm
from .models import LightGCN, RecEmbedding, Recommender

__all__ = ['MMSSLConv', 'bipartite_norm', 'LightGCN', 'RecEmbedding',
           'Recommender']
