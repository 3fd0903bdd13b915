r"""Which device a run uses: names are checked once, where they enter."""
import torch


DEVICE_HELP = "expected 'auto', 'cpu', 'cuda' or 'cuda:N'"


def check_device(device: str) -> None:
    r"""Raises one line of :class:`ValueError` unless ``device`` names a
    device this library runs on (``"auto"``, ``"cpu"``, ``"cuda"``,
    ``"cuda:N"``); whether it is present is :func:`resolve_device`'s check.
    """
    if device == 'auto':
        return
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError):
        raise ValueError(f"unknown device '{device}': {DEVICE_HELP}") \
            from None
    if dev.type not in ('cpu', 'cuda') or (dev.type == 'cpu' and
                                           dev.index not in (None, 0)):
        raise ValueError(f"unsupported device '{device}': {DEVICE_HELP}")


def resolve_device(device: str) -> torch.device:
    r"""``"auto"`` is CUDA when available, else CPU; a named device must be
    present."""
    check_device(device)
    if device == 'auto':
        return torch.device('cuda' if torch.cuda.is_available() else 'cpu')
    dev = torch.device(device)
    if dev.type == 'cuda':
        if not torch.cuda.is_available():
            raise ValueError(f"device '{device}' requested but CUDA is not "
                             f"available")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise ValueError(f"device '{device}' requested but only "
                             f"{torch.cuda.device_count()} CUDA device(s) "
                             f"are visible")
    return dev
