r"""A run's configuration as a JSON file: what ``pyg-mmssl tune`` writes as
``best.json`` and ``pyg-mmssl train --config`` reads.

.. code-block:: json

    {"model": "lightgcn", "dataset": "synthetic", "preset": "default",
     "model_config": {"embedding_dim": 64, "num_layers": 2, "reg": 1e-05},
     "train_config": {"lr": 0.002, "batch_size": 2048, "seed": 3},
     "study": {"metric": "val recall@20", "value": 0.123, "trial": 3}}

Every key is optional. ``model_config`` and ``train_config`` hold options
of the model's config (:data:`~pyg_mmssl.presets.MODEL_CONFIGS`) and of
:class:`~pyg_mmssl.train.TrainConfig`; options not given come from the
preset. ``study`` records where the values come from and is not read.
"""
import json
import os.path as osp
import typing
from dataclasses import asdict, fields
from typing import Any, Dict, NamedTuple, Optional

from pyg_mmssl.presets import MODEL_CONFIGS, preset_names
from pyg_mmssl.train import TrainConfig

KEYS = ('model', 'dataset', 'preset', 'model_config', 'train_config', 'study')
# Options of where and how a run is executed, not of what it learns.
RUNTIME_OPTIONS = ('device', 'quiet')


class RunConfig(NamedTuple):
    r"""The content of a config file: the model it is for (:obj:`None` if
    not named), the dataset it was made on, its preset and the values of
    the model's and the trainer's options it sets."""
    model: Optional[str]
    dataset: Optional[str]
    preset: Optional[str]
    model_config: Dict[str, Any]
    train_config: Dict[str, Any]


_NAMES = {int: 'an integer', float: 'a number', bool: 'true or false',
          str: 'a string'}


def _describe(tp) -> str:
    args = typing.get_args(tp)
    if typing.get_origin(tp) is typing.Union:
        return ' or '.join('null' if a is type(None) else _describe(a)
                           for a in args)
    if typing.get_origin(tp) is tuple:
        return 'a list'
    return _NAMES.get(tp, getattr(tp, '__name__', str(tp)))


def _convert(tp, value: Any) -> Any:
    r"""``value`` as an option annotated ``tp`` takes it; raises
    :class:`TypeError` if it is of another type."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin is typing.Union:
        if value is None and type(None) in args:
            return None
        for arg in args:
            if arg is not type(None):
                try:
                    return _convert(arg, value)
                except TypeError:
                    pass
        raise TypeError
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise TypeError
        kinds = ([args[0]] * len(value) if len(args) == 2 and args[1] is ...
                 else list(args))
        if len(kinds) != len(value):
            raise TypeError
        return tuple(_convert(k, v) for k, v in zip(kinds, value))
    if tp is float and isinstance(value, (int, float)) and \
            not isinstance(value, bool):
        return float(value)
    if tp is int and isinstance(value, bool):
        raise TypeError
    if tp in _NAMES and not isinstance(value, tp):
        raise TypeError
    return value


def check_value(config: type, name: str, value: Any, where: str) -> Any:
    r"""``value`` as option ``name`` of the config dataclass ``config`` takes
    it (a float option takes an integer, a tuple option a list). A value of
    another type, outside the option's ``choices``, or refused by the
    config's own checks raises one line of :class:`ValueError` that starts
    with ``where``."""
    field = next(f for f in fields(config) if f.name == name)
    try:
        value = _convert(field.type, value)
    except TypeError:
        raise ValueError(f"{where}: '{name}' must be "
                         f"{_describe(field.type)}, got {value!r}") from None
    choices = field.metadata.get('choices')
    if choices is not None and value is not None and value not in choices:
        raise ValueError(f"{where}: '{name}' must be one of {list(choices)}, "
                         f"got {value!r}")
    try:  # the checks of the config itself (TrainConfig's)
        config(**{name: value})
    except ValueError as e:
        raise ValueError(f"{where}: {e}") from None
    return value


def config_dict(model: str, dataset: str, preset: str, model_config: Any,
                train_config: TrainConfig, **extra: Any) -> Dict[str, Any]:
    r"""The file content of a run's configuration: every option of
    ``model_config`` and of ``train_config`` (but where it runs:
    :data:`RUNTIME_OPTIONS`), and the ``extra`` keys (``study=...``)."""
    train = {k: v for k, v in asdict(train_config).items()
             if k not in RUNTIME_OPTIONS}
    return {'model': model, 'dataset': dataset, 'preset': preset,
            'model_config': asdict(model_config), 'train_config': train,
            **extra}


def read_config(path: str, model: str) -> RunConfig:
    r"""Reads and checks the config file ``path`` for a run of ``model``.
    A missing file, invalid JSON, an unknown key or option, a value of the
    wrong type or a config of another model is one line of
    :class:`FileNotFoundError` or :class:`ValueError` naming the file."""
    if not osp.isfile(path):
        raise FileNotFoundError(f"config file '{path}' does not exist")
    try:
        with open(path, encoding='utf-8') as f:
            content = json.load(f)
    except json.JSONDecodeError as e:
        raise ValueError(f"config file '{path}' is not valid JSON (line "
                         f"{e.lineno}: {e.msg})") from None
    where = f"config file '{path}'"
    if not isinstance(content, dict):
        raise ValueError(f"{where} must hold a JSON object")
    unknown = [k for k in content if k not in KEYS]
    if unknown:
        raise ValueError(f"{where}: unknown key '{unknown[0]}' (expected "
                         f"{', '.join(KEYS)})")
    if content.get('model', model) != model:
        raise ValueError(f"{where} is for model '{content['model']}'; this "
                         f"run asks for --model {model}")
    name = content.get('preset')
    if name is not None and name not in preset_names(model):
        raise ValueError(f"{where}: unknown preset '{name}' for model "
                         f"'{model}', expected one of {preset_names(model)}")
    values = {}
    for key, config in (('model_config', MODEL_CONFIGS[model]),
                        ('train_config', TrainConfig)):
        given = content.get(key, {})
        if not isinstance(given, dict):
            raise ValueError(f"{where}: '{key}' must be a JSON object")
        known = {f.name for f in fields(config)}
        wrong = [k for k in given if k not in known]
        if wrong:
            owner = f"model '{model}'" if key == 'model_config' else \
                'the trainer'
            raise ValueError(f"{where}: '{wrong[0]}' in '{key}' is not an "
                             f"option of {owner}")
        values[key] = {k: check_value(config, k, v, where)
                       for k, v in given.items()}
    return RunConfig(content.get('model'), content.get('dataset'), name,
                     values['model_config'], values['train_config'])
