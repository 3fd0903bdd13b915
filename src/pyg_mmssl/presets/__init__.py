r"""Model configurations (plain dataclasses) and per-dataset presets.

A preset is the set of values a model is trained with on a dataset; every
value can be overridden from the CLI (``pyg-mmssl train --<field> VALUE``).
"""
from dataclasses import dataclass, fields, replace
from typing import Any, Dict, Optional, Tuple

from pyg_mmssl.train import TrainConfig


@dataclass
class LightGCNConfig:
    embedding_dim: int = 64
    num_layers: int = 3
    reg: float = 1e-4
    backend: Optional[str] = None


MODEL_CONFIGS = {
    'lightgcn': LightGCNConfig,
}

# (model, dataset) -> {'model': {...}, 'train': {...}}; 'default' applies to
# any dataset without its own entry.
PRESETS: Dict[Tuple[str, str], Dict[str, Dict[str, Any]]] = {
    ('lightgcn', 'default'): {'train': {'lr': 1e-3, 'batch_size': 2048}},
}


def preset(model: str, dataset: str) -> Tuple[Any, TrainConfig]:
    r"""The model config and train config a model uses on a dataset."""
    if model not in MODEL_CONFIGS:
        raise ValueError(f"unknown model '{model}', expected one of "
                         f"{sorted(MODEL_CONFIGS)}")
    values = PRESETS.get((model, dataset)) or PRESETS.get(
        (model, 'default'), {})
    model_cfg = MODEL_CONFIGS[model](**values.get('model', {}))
    train_cfg = TrainConfig(**values.get('train', {}))
    return model_cfg, train_cfg


def override(config, values: Dict[str, Any]):
    r"""``config`` with the non-:obj:`None` ``values`` of its fields set."""
    names = {f.name for f in fields(config)}
    return replace(config, **{k: v for k, v in values.items()
                              if k in names and v is not None})
