from .conv import MMGCNConv, MMSSLConv, bipartite_norm
from .models import LightGCN, MMGCN, MMSSL, RecEmbedding, Recommender

__all__ = ['MMSSLConv', 'MMGCNConv', 'bipartite_norm', 'LightGCN', 'MMGCN',
           'MMSSL', 'RecEmbedding', 'Recommender']
