r"""Rebuilding a trained model, with its dataset, from a checkpoint that
:class:`~pyg_mmssl.train.Trainer` wrote (``best.pt`` or ``last.pt``)."""
from typing import Any, Dict, NamedTuple, Optional

from torch_geometric.data import HeteroData

from pyg_mmssl.device import resolve_device
from pyg_mmssl.files import read_checkpoint
from pyg_mmssl.nn.models import Recommender


class TrainedModel(NamedTuple):
    checkpoint: Dict[str, Any]  #: the checkpoint's entries
    data: HeteroData  #: the dataset it was trained on
    model: Recommender  #: the model, weights loaded, in eval mode


def load_checkpoint(path: str, root: Optional[str] = None,
                    device: str = 'auto') -> TrainedModel:
    r"""Loads the checkpoint at ``path`` (tensors and plain values only, see
    :func:`~pyg_mmssl.files.read_checkpoint`), reloads its dataset (from
    ``root`` if given, else from where it was trained) and rebuilds its model
    on ``device``. A file that is not such a checkpoint, or whose weights do
    not fit the model its options build, raises one line of
    :class:`ValueError`."""
    from pyg_mmssl.datasets import load_dataset
    from pyg_mmssl.presets import MODEL_CONFIGS, build_model

    device = resolve_device(device)
    ckpt = read_checkpoint(path, required=('meta', 'model', 'config'))
    meta = ckpt['meta']
    if meta.get('model') not in MODEL_CONFIGS or not isinstance(
            meta.get('model_config'), dict):
        raise ValueError(f"'{path}' is not a pyg-mmssl checkpoint (its meta "
                         f"names no known model)")
    data = load_dataset(meta['dataset'], root or meta.get('root'),
                        inter=meta.get('inter'),
                        options=meta.get('dataset_options'))
    try:
        config = MODEL_CONFIGS[meta['model']](**meta['model_config'])
    except TypeError as e:
        raise ValueError(f"'{path}' was written by another version of "
                         f"pyg-mmssl ({e})") from e
    model = build_model(meta['model'], config, data)
    try:
        model.load_state_dict(ckpt['model'])
    except RuntimeError as e:
        raise ValueError(f"'{path}': its weights do not fit the model built "
                         f"from the dataset ({str(e).splitlines()[0][:160]})"
                         ) from e
    return TrainedModel(ckpt, data, model.to(device).eval())
