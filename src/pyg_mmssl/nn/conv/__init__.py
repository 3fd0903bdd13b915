from .mmssl_conv import MMSSLConv, bipartite_norm

__all__ = ['MMSSLConv', 'bipartite_norm']
