from .mmssl_conv import MMSSLConv, bipartite_norm
from .mmgcn_conv import MMGCNConv

__all__ = ['MMSSLConv', 'MMGCNConv', 'bipartite_norm']
