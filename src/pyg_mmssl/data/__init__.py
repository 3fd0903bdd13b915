from .graph import (DataError, EDGE, REV_EDGE, build_data, modality_features,
                    split_edge_index, statistics, to_csr)
from .sampler import BPRBatch, BPRSampler

__all__ = [
    'DataError',
    'EDGE',
    'REV_EDGE',
    'build_data',
    'modality_features',
    'split_edge_index',
    'statistics',
    'to_csr',
    'BPRBatch',
    'BPRSampler',
]
