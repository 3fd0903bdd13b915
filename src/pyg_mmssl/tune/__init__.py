r"""Hyper-parameter search (``pyg-mmssl tune``): an Optuna study per model
and dataset (:func:`tune`), its search spaces (:mod:`.space`) and the files
it writes (:mod:`.report`). Optuna is imported only when a study runs
(``pip install 'pyg_mmssl[tune]'``)."""
from .report import write_reports
from .space import SPACES, TRAIN_OPTIONS, check_space, default_space, \
    load_space, suggest
from .study import MissingDependency, NoTrialCompleted, TuneResult, \
    default_pruner, tune

__all__ = [
    'MissingDependency',
    'NoTrialCompleted',
    'SPACES',
    'TRAIN_OPTIONS',
    'TuneResult',
    'check_space',
    'default_pruner',
    'default_space',
    'load_space',
    'suggest',
    'tune',
    'write_reports',
]
