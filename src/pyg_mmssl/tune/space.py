r"""Search spaces of :func:`~pyg_mmssl.tune.tune`: which options a study
varies, and over which values.

A space maps option names (fields of the model's config in
:data:`~pyg_mmssl.presets.MODEL_CONFIGS`, or one of :data:`TRAIN_OPTIONS`)
to one of

* ``{"type": "float", "low": a, "high": b}``, with optional ``"log": true``
  (sampled uniformly in :math:`\log x`) or ``"step": s``;
* ``{"type": "int", "low": a, "high": b}``, with optional ``"log"`` or
  ``"step"`` (bounds included);
* ``{"type": "categorical", "choices": [...]}``;
* a plain value: the option is set to it in every trial, not searched.

Options a space does not name keep the preset's value.
"""
import difflib
import json
import os.path as osp
from dataclasses import fields
from typing import Any, Dict

from pyg_mmssl.presets import MODEL_CONFIGS
from pyg_mmssl.presets.config_file import check_value
from pyg_mmssl.train import TrainConfig

# Options of TrainConfig a space may set; the others (epochs, patience, seed,
# device, the evaluation protocol) are the same for every trial of a study.
TRAIN_OPTIONS = ('lr', 'lr_decay', 'lr_min', 'weight_decay', 'batch_size',
                 'optimizer', 'discriminator_lr')

# The default space of each model: learning rate and regularisation, and
# the options the model's paper tunes. Embedding sizes stay at the preset's
# (a larger one rarely loses, it only costs time).
SPACES: Dict[str, Dict[str, Any]] = {
    'lightgcn': {
        'lr': {'type': 'float', 'low': 1e-4, 'high': 1e-2, 'log': True},
        'reg': {'type': 'float', 'low': 1e-6, 'high': 1e-2, 'log': True},
        'num_layers': {'type': 'int', 'low': 1, 'high': 4},
    },
    'mmgcn': {
        'lr': {'type': 'float', 'low': 1e-4, 'high': 1e-2, 'log': True},
        'reg': {'type': 'float', 'low': 1e-6, 'high': 1e-2, 'log': True},
        'num_layers': {'type': 'int', 'low': 1, 'high': 3},
        'combine': {'type': 'categorical', 'choices': ['concat', 'add']},
    },
    # FREEDOM and BM3: the options MMRec's configs search (grids there,
    # ranges here), and the learning rate.
    'freedom': {
        'lr': {'type': 'float', 'low': 1e-4, 'high': 1e-2, 'log': True},
        'edge_dropout': {'type': 'float', 'low': 0.5, 'high': 0.95},
        'feat_weight': {'type': 'categorical',
                        'choices': [0.0, 1e-5, 1e-4, 1e-3, 1e-2]},
    },
    'bm3': {
        'lr': {'type': 'float', 'low': 1e-4, 'high': 1e-2, 'log': True},
        'num_layers': {'type': 'int', 'low': 1, 'high': 3},
        'target_dropout': {'type': 'float', 'low': 0.1, 'high': 0.6},
        'norm_reg': {'type': 'float', 'low': 1e-3, 'high': 1.0, 'log': True},
    },
    'mmssl': {
        'lr': {'type': 'float', 'low': 1e-4, 'high': 3e-3, 'log': True},
        'reg': {'type': 'float', 'low': 1e-6, 'high': 1e-3, 'log': True},
        'cl_rate': {'type': 'float', 'low': 1e-3, 'high': 0.3, 'log': True},
        'g_rate': {'type': 'float', 'low': 1e-5, 'high': 1e-2, 'log': True},
        'lambda_f': {'type': 'float', 'low': 0.01, 'high': 1.0, 'log': True},
        'lambda_id': {'type': 'float', 'low': 0.05, 'high': 1.0,
                      'log': True},
        'dropout': {'type': 'float', 'low': 0.0, 'high': 0.5},
        'topk_rate': {'type': 'float', 'low': 1e-4, 'high': 3e-2,
                      'log': True},
        # Fixed, not searched: refreshing the learned graphs once per epoch
        # (59 steps on TikTok) gives the same validation curve as every
        # step, at a fraction of the cost (benchmarks/RESULTS.md).
        'refresh_every': 59,
        # Whether structure learning is on, and how its graphs are used.
        'adversarial': {'type': 'categorical', 'choices': [True, False]},
        'learned_graph': {'type': 'categorical',
                          'choices': ['replace', 'union', 'mix']},
        'graph_beta': {'type': 'float', 'low': 0.5, 'high': 0.95},
        'learned_weight': {'type': 'categorical',
                           'choices': ['binary', 'score']},
    },
}

_KEYS = {'float': ('low', 'high', 'log', 'step'),
         'int': ('low', 'high', 'log', 'step'),
         'categorical': ('choices', )}


def default_space(model: str) -> Dict[str, Any]:
    r"""The space a study of ``model`` searches without a space file: its
    entry in :data:`SPACES`, else the learning rate and, where the model
    has them, ``reg`` and ``num_layers`` (so that every model is
    tunable)."""
    if model in SPACES:
        space = SPACES[model]
    else:
        generic = {**SPACES['lightgcn'], **SPACES['mmgcn']}
        space = {k: v for k, v in generic.items()
                 if k == 'lr' or k in _model_options(model)}
        space.pop('combine', None)
    return check_space(space, model)


def _model_options(model: str) -> Dict[str, type]:
    r"""``{option: config class}`` of ``model``'s options."""
    return {f.name: MODEL_CONFIGS[model] for f in fields(
        MODEL_CONFIGS[model])}


def _owner(name: str, model: str, where: str) -> type:
    r"""The config dataclass a space entry ``name`` sets, or one line of
    :class:`ValueError`."""
    owners = {**{k: TrainConfig for k in TRAIN_OPTIONS},
              **_model_options(model)}
    if name in owners:
        return owners[name]
    if name in {f.name for f in fields(TrainConfig)}:
        raise ValueError(f"{where}: '{name}' cannot be searched, a study "
                         f"keeps it fixed (searchable training options: "
                         f"{', '.join(TRAIN_OPTIONS)})")
    near = difflib.get_close_matches(name, owners, n=1)
    hint = f"; did you mean '{near[0]}'?" if near else \
        '; see pyg-mmssl train --help'
    raise ValueError(f"{where}: unknown option '{name}': not an option of "
                     f"model '{model}' nor a searchable training option"
                     f"{hint}")


def check_space(space: Any, model: str,
                where: str = 'search space') -> Dict[str, Any]:
    r"""Checks a search space for ``model`` and returns it completed (every
    range with its ``log`` and ``step``, values converted to the option's
    type). An unknown option, an entry of a type the option cannot take, or
    bad bounds raises one line of :class:`ValueError` that starts with
    ``where`` and names the option."""
    if model not in MODEL_CONFIGS:
        raise ValueError(f"unknown model '{model}', expected one of "
                         f"{sorted(MODEL_CONFIGS)}")
    if not isinstance(space, dict):
        raise ValueError(f"{where} must map option names to ranges, got "
                         f"{type(space).__name__}")
    out = {}
    for name, spec in space.items():
        config = _owner(name, model, where)
        if isinstance(spec, dict):
            out[name] = _check_range(config, name, spec, where)
        else:
            out[name] = check_value(config, name, spec, where)
    return out


def _check_range(config: type, name: str, spec: Dict[str, Any],
                 where: str) -> Dict[str, Any]:
    kind = spec.get('type')
    if kind not in _KEYS:
        raise ValueError(f"{where}: '{name}' needs a 'type' of 'float', "
                         f"'int' or 'categorical', got {kind!r}")
    extra = [k for k in spec if k != 'type' and k not in _KEYS[kind]]
    if extra:
        raise ValueError(f"{where}: '{name}': unknown key '{extra[0]}' for "
                         f"type '{kind}' (expected "
                         f"{', '.join(_KEYS[kind])})")
    if kind == 'categorical':
        choices = spec.get('choices')
        if not isinstance(choices, list) or not choices:
            raise ValueError(f"{where}: '{name}': 'choices' must be a "
                             f"non-empty list")
        return {'type': kind, 'choices': [check_value(config, name, c, where)
                                          for c in choices]}
    tp = next(f.type for f in fields(config) if f.name == name)
    if tp is not {'int': int, 'float': float}[kind]:
        fits = {int: "'int' or 'categorical'",
                float: "'float' or 'categorical'"}.get(tp, "'categorical'")
        raise ValueError(f"{where}: '{name}' cannot take type '{kind}' (use "
                         f"{fits})")
    missing = [k for k in ('low', 'high') if k not in spec]
    if missing:
        raise ValueError(f"{where}: '{name}' needs '{missing[0]}'")
    low, high = (check_value(config, name, spec[k], where)
                 for k in ('low', 'high'))
    log, step = spec.get('log', False), spec.get('step')
    if not isinstance(log, bool):
        raise ValueError(f"{where}: '{name}': 'log' must be true or false")
    if not low < high:
        raise ValueError(f"{where}: '{name}': 'low' ({low}) must be below "
                         f"'high' ({high})")
    if log and low <= 0:
        raise ValueError(f"{where}: '{name}': a log range needs 'low' > 0, "
                         f"got {low}")
    if step is not None:
        step = check_value(config, name, step, where)
        if log or step <= 0:
            raise ValueError(f"{where}: '{name}': 'step' must be positive "
                             f"and cannot go with 'log'")
    elif kind == 'int':
        step = 1
    return {'type': kind, 'low': low, 'high': high, 'log': log,
            'step': step}


def load_space(path: str, model: str) -> Dict[str, Any]:
    r"""Reads a search space for ``model`` from a JSON (``.json``) or YAML
    (``.yaml``, ``.yml``) file and checks it (:func:`check_space`)."""
    if not osp.isfile(path):
        raise FileNotFoundError(f"space file '{path}' does not exist")
    where = f"space file '{path}'"
    ext = osp.splitext(path)[1].lower()
    with open(path, encoding='utf-8') as f:
        if ext == '.json':
            try:
                space = json.load(f)
            except json.JSONDecodeError as e:
                raise ValueError(f"{where} is not valid JSON (line "
                                 f"{e.lineno}: {e.msg})") from None
        elif ext in ('.yaml', '.yml'):
            try:
                import yaml
            except ImportError:
                raise ImportError("reading a YAML space file needs PyYAML: "
                                  "pip install 'pyg_mmssl[tune]' (or use "
                                  "JSON)") from None
            try:
                space = yaml.safe_load(f)
            except yaml.YAMLError as e:
                mark = getattr(e, 'problem_mark', None)
                line = f"line {mark.line + 1}: " if mark else ''
                problem = getattr(e, 'problem', None) or type(e).__name__
                raise ValueError(f"{where} is not valid YAML ({line}"
                                 f"{problem})") from None
        else:
            raise ValueError(f"{where}: expected a .json, .yaml or .yml file")
    return check_space(space, model, where)


def suggest(trial, space: Dict[str, Any]) -> Dict[str, Any]:
    r"""The option values of one trial (an :class:`optuna.trial.Trial`)
    from a checked space: a value drawn for each range, the fixed values as
    they are."""
    values = {}
    for name, spec in space.items():
        if not isinstance(spec, dict):
            values[name] = spec
        elif spec['type'] == 'categorical':
            values[name] = trial.suggest_categorical(name, spec['choices'])
        elif spec['type'] == 'int':
            values[name] = trial.suggest_int(name, spec['low'], spec['high'],
                                             step=spec['step'],
                                             log=spec['log'])
        else:
            values[name] = trial.suggest_float(name, spec['low'],
                                               spec['high'],
                                               step=spec['step'],
                                               log=spec['log'])
    return values
