from .conv import MMGCNConv, MMSSLConv, bipartite_norm
from .knn import knn_item_graph
from .models import (BM3, FREEDOM, MMGCN, MMSSL, LightGCN, RecEmbedding,
                     Recommender)

__all__ = ['MMSSLConv', 'MMGCNConv', 'bipartite_norm', 'knn_item_graph',
           'LightGCN', 'MMGCN', 'MMSSL', 'FREEDOM', 'BM3', 'RecEmbedding',
           'Recommender']
