r"""The training protocol: BPR mini-batches, early stopping on validation
Recall@20, test reported once at the best validation epoch, seeded, with
atomic checkpoints and resume.

The trainer knows a model only through :class:`~pyg_mmssl.nn.models.base.
Recommender`'s interface: ``loss`` (named terms, ``"loss"`` minimised),
``get_embedding`` for evaluation, and optionally a discriminator with its own
optimiser, stepped through the callback ``loss`` receives.
"""
import inspect
import logging
import os.path as osp
import random
import resource
import sys
import time
from dataclasses import asdict, dataclass
from typing import Any, Dict, List, Optional, Tuple

import numpy as np
import torch
from torch.profiler import record_function
from torch_geometric.data import HeteroData
from tqdm.auto import tqdm

from pyg_mmssl.data.graph import EDGE, split_edge_index, to_csr
from pyg_mmssl.data.sampler import BPRSampler
from pyg_mmssl.distributed import (average_gradients_, broadcast_,
                                   get_rank, get_world_size, is_main,
                                   parameter_fingerprints)
from pyg_mmssl.io import atomic_torch_save, atomic_write_json
from pyg_mmssl.metrics import DEFAULT_KS, evaluate
from pyg_mmssl.nn.models.base import Recommender

log = logging.getLogger(__name__)

SELECTION_METRIC = 'recall@20'


@dataclass
class TrainConfig:
    r"""Options of :class:`Trainer` (each is a CLI flag of ``pyg-mmssl
    train``)."""
    epochs: int = 1000
    batch_size: int = 2048
    lr: float = 1e-3
    weight_decay: float = 0.0
    optimizer: str = 'adam'
    patience: int = 20
    eval_every: int = 1
    ks: Tuple[int, ...] = DEFAULT_KS
    eval_chunk_size: int = 1024
    mask_val_at_test: bool = False
    seed: int = 2024
    device: str = 'auto'
    quiet: bool = False
    discriminator_lr: float = 3e-4
    discriminator_betas: Tuple[float, float] = (0.5, 0.9)

    def __post_init__(self):
        if self.optimizer not in ('adam', 'adamw'):
            raise ValueError(f"unknown optimizer '{self.optimizer}', expected "
                             f"'adam' or 'adamw'")
        for name in ('epochs', 'batch_size', 'patience', 'eval_every',
                     'eval_chunk_size'):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be positive, got "
                                 f"{getattr(self, name)}")
        if 20 not in self.ks:
            self.ks = tuple(sorted(set(self.ks) | {20}))


def resolve_device(device: str) -> torch.device:
    r"""``"auto"`` is CUDA when available, else CPU."""
    if device == 'auto':
        return torch.device('cuda' if torch.cuda.is_available() else 'cpu')
    dev = torch.device(device)
    if dev.type == 'cuda' and not torch.cuda.is_available():
        raise ValueError(f"device '{device}' requested but CUDA is not "
                         f"available")
    return dev


def seed_everything(seed: int):
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def peak_memory_mb(device: torch.device) -> float:
    r"""Peak resident memory of this process (CPU) or peak allocated CUDA
    memory, in MB."""
    if device.type == 'cuda':
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _rng_state(sampler: BPRSampler) -> Dict[str, Any]:
    return {
        'torch': torch.get_rng_state(),
        'cuda': (torch.cuda.get_rng_state_all()
                 if torch.cuda.is_available() else None),
        # Plain lists, so that checkpoints load with weights_only=True.
        'numpy': [v.tolist() if isinstance(v, np.ndarray) else v
                  for v in np.random.get_state()],
        'python': random.getstate(),
        'sampler': sampler.generator.get_state(),
    }


def _set_rng_state(state: Dict[str, Any], sampler: BPRSampler):
    # Generator states are CPU byte tensors, wherever the checkpoint was
    # mapped to.
    torch.set_rng_state(state['torch'].cpu())
    if state['cuda'] is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([s.cpu() for s in state['cuda']])
    name, keys, *rest = state['numpy']
    np.random.set_state((name, np.array(keys, dtype=np.uint32), *rest))
    random.setstate(state['python'])
    sampler.generator.set_state(state['sampler'].cpu())


def _fused(optimizer_cls, params, **kwargs) -> torch.optim.Optimizer:
    r"""``optimizer_cls(params, **kwargs)``, with the fused kernel where the
    parameters' device has one (on this project's CPU, one Adam step of the
    ``exact`` critic's 1,677 x 6,710 weight: 12 ms fused, 61 ms default),
    else the default implementation. (torch 2.13's CPU kernel reads a
    parameter, its gradient and its state as flat memory, so they must share
    one layout: autograd's gradient accumulation makes sure of that.)"""
    params = list(params)
    try:
        return optimizer_cls(params, fused=True, **kwargs)
    except RuntimeError:
        return optimizer_cls(params, **kwargs)


def _match_state_shapes(optimizer: torch.optim.Optimizer):
    r"""Transposes optimiser state that a checkpoint holds as the transpose
    of its parameter (the critic's first-layer state, written before that
    layer stored :math:`\mathbf{W}_1^\top`)."""
    for group in optimizer.param_groups:
        for param in group['params']:
            state = optimizer.state.get(param, {})
            for key, value in state.items():
                if (torch.is_tensor(value) and value.dim() == 2
                        and value.shape != param.shape
                        and value.shape == param.shape[::-1]):
                    state[key] = value.t().contiguous()


class Trainer:
    r"""Trains a :class:`Recommender` on ``data`` with the full-ranking
    protocol.

    Args:
        model (Recommender): The model, bound to ``data``'s training graph.
        data (HeteroData): The dataset (see :func:`pyg_mmssl.data.build_data`).
        config (TrainConfig): Options.
        out (str, optional): Folder for ``metrics.json``, ``history.json``,
            ``last.pt`` and ``best.pt``; nothing is written if omitted.
        meta (dict, optional): Stored in checkpoints and ``metrics.json``
            (model name and arguments, dataset, command), so that a
            checkpoint can rebuild its model.
        edge_type (tuple): The interaction edge type. (default:
            ``('user', 'interacts', 'item')``)
    """
    def __init__(self, model: Recommender, data: HeteroData,
                 config: TrainConfig, out: Optional[str] = None,
                 meta: Optional[Dict[str, Any]] = None, edge_type=EDGE):
        self.config = config
        self.device = resolve_device(config.device)
        self.model = model.to(self.device)
        self.out = out
        self.meta = dict(meta or {})
        src, _, dst = edge_type
        num_users, num_items = data[src].num_nodes, data[dst].num_nodes
        train = split_edge_index(data, 'train', edge_type)
        self.train_csr = to_csr(train, num_users, num_items)
        self.val_csr = to_csr(split_edge_index(data, 'val', edge_type),
                              num_users, num_items)
        self.test_csr = to_csr(split_edge_index(data, 'test', edge_type),
                               num_users, num_items)
        # With several ranks (torch.distributed), all draw the same global
        # batches and each keeps its part; see pyg_mmssl.distributed.
        self.world_size = get_world_size()
        self.write = self.out is not None and is_main()
        self.sampler = BPRSampler(train, num_users, num_items,
                                  config.batch_size,
                                  torch.Generator().manual_seed(config.seed),
                                  rank=get_rank(), world_size=self.world_size)
        opt_cls = (torch.optim.AdamW
                   if config.optimizer == 'adamw' else torch.optim.Adam)
        self.optimizer = _fused(opt_cls, model.recommender_parameters(),
                                lr=config.lr,
                                weight_decay=config.weight_decay)
        d_params = model.discriminator_parameters()
        self.d_optimizer = _fused(
            torch.optim.Adam, d_params, lr=config.discriminator_lr,
            betas=config.discriminator_betas) if d_params else None
        self.show_progress = (not config.quiet and sys.stderr.isatty() and
                              is_main())
        self.loss = model.loss
        if self.world_size > 1:
            self.loss = _distributed_loss(model, self.device)
            for p in d_params:
                broadcast_(p.data)

    # Evaluation ############################################################

    @torch.no_grad()
    def evaluate(self, split: str) -> Dict[str, float]:
        r"""Full-ranking metrics on ``"val"`` or ``"test"`` (training items,
        and with ``mask_val_at_test`` validation items, excluded)."""
        self.model.eval()
        emb = self.model.get_embedding()
        exclude = [self.train_csr]
        if split == 'test' and self.config.mask_val_at_test:
            exclude.append(self.val_csr)
        relevant = self.val_csr if split == 'val' else self.test_csr
        return evaluate(emb.user, emb.item, relevant, exclude,
                        self.config.ks, self.config.eval_chunk_size,
                        distributed=self.world_size > 1)

    # Training ##############################################################

    def _discriminator_step(self, d_loss: torch.Tensor):
        self.d_optimizer.zero_grad(set_to_none=True)
        d_loss.backward()
        average_gradients_(self.model.discriminator_parameters())
        self.d_optimizer.step()

    def train_step(self, batch, state: Dict[str, Any]) -> Dict[str, float]:
        r"""One optimisation step on a BPR batch; returns the loss terms."""
        user, pos, neg = (t.to(self.device) for t in batch)
        d_step = self._discriminator_step if self.d_optimizer else None
        with record_function('step.loss'):
            terms = self.loss(user, pos, neg, d_step)
        self.optimizer.zero_grad(set_to_none=True)
        with record_function('step.backward'):
            terms['loss'].backward()
        with record_function('step.optimizer'):
            self.optimizer.step()
        state['step'] += 1
        return {k: float(v.detach()) for k, v in terms.items()}

    def train_epoch(self, epoch: int, state: Dict[str, Any]
                    ) -> Dict[str, float]:
        self.model.train()
        sums: Dict[str, float] = {}
        bar = tqdm(self.sampler, total=len(self.sampler), leave=False,
                   desc=f'epoch {epoch}', disable=not self.show_progress)
        for batch in bar:
            values = self.train_step(batch, state)
            for key, value in values.items():
                sums[key] = sums.get(key, 0.) + value
            bar.set_postfix(loss=f"{values['loss']:.4f}")
        return {key: value / len(self.sampler) for key, value in sums.items()}

    def _checkpoint(self, state: Dict[str, Any]) -> Dict[str, Any]:
        return {
            'meta': self.meta,
            'config': asdict(self.config),
            'model': self.model.state_dict(),
            'optimizer': self.optimizer.state_dict(),
            'd_optimizer': (self.d_optimizer.state_dict()
                            if self.d_optimizer else None),
            'state': state,
            'rng': _rng_state(self.sampler),
        }

    def _path(self, name: str) -> Optional[str]:
        return osp.join(self.out, name) if self.out else None

    def fit(self, resume: bool = False) -> Dict[str, Any]:
        r"""Trains until early stopping (or ``epochs``), then evaluates the
        best-validation model on test. Returns what ``metrics.json`` holds."""
        cfg = self.config
        seed_everything(cfg.seed)
        state: Dict[str, Any] = {
            'epoch': 0, 'step': 0, 'best_val': None, 'best_epoch': None,
            'bad_epochs': 0, 'history': [], 'train_seconds': 0.0,
            'finished': False,
        }
        best_model: Optional[Dict[str, torch.Tensor]] = None
        last = self._path('last.pt')
        if resume:
            if not last or not osp.exists(last):
                raise FileNotFoundError(
                    f"--resume: no checkpoint '{last}' to resume from")
            try:
                ckpt = torch.load(last, map_location=self.device,
                                  weights_only=True)
            except Exception as e:  # corrupt or foreign file, old format
                raise ValueError(f"--resume: '{last}' is not a checkpoint "
                                 f"this version can resume ({type(e).__name__}"
                                 f"); start a new run with another --out"
                                 ) from e
            self.model.load_state_dict(ckpt['model'])
            self.optimizer.load_state_dict(ckpt['optimizer'])
            if self.d_optimizer is not None:
                self.d_optimizer.load_state_dict(ckpt['d_optimizer'])
                _match_state_shapes(self.d_optimizer)
            state = ckpt['state']
            _set_rng_state(ckpt['rng'], self.sampler)
            best = self._path('best.pt')
            if osp.exists(best):
                best_model = torch.load(best, map_location=self.device,
                                        weights_only=True)['model']
            log.info("resumed from %s at epoch %d", last, state['epoch'])

        bar = tqdm(total=cfg.epochs, initial=state['epoch'], desc='training',
                   disable=not self.show_progress)
        while not state['finished'] and state['epoch'] < cfg.epochs:
            epoch = state['epoch'] + 1
            start = time.perf_counter()
            losses = self.train_epoch(epoch, state)
            seconds = time.perf_counter() - start
            state['train_seconds'] += seconds
            record: Dict[str, Any] = {'epoch': epoch, 'seconds': seconds,
                                      'elapsed': state['train_seconds'],
                                      **losses}
            if epoch % cfg.eval_every == 0 or epoch == cfg.epochs:
                val = self.evaluate('val')
                record['val'] = val
                score = val[SELECTION_METRIC]
                if state['best_val'] is None or score > state['best_val']:
                    state['best_val'], state['best_epoch'] = score, epoch
                    state['bad_epochs'] = 0
                    best_model = {k: v.detach().clone() for k, v in
                                  self.model.state_dict().items()}
                    if self.write:
                        atomic_torch_save({'meta': self.meta,
                                           'config': asdict(cfg),
                                           'model': best_model,
                                           'epoch': epoch},
                                          self._path('best.pt'))
                else:
                    state['bad_epochs'] += cfg.eval_every
                if state['bad_epochs'] >= cfg.patience:
                    state['finished'] = True
                bar.set_postfix(val_recall20=f'{score:.4f}',
                                best=f"{state['best_val']:.4f}")
                self._log(record)
            state['history'].append(record)
            state['epoch'] = epoch
            bar.update(1)
            if self.write:
                atomic_torch_save(self._checkpoint(state), last)
                atomic_write_json(state['history'],
                                  self._path('history.json'))
        bar.close()
        return self._finish(state, best_model)

    def _log(self, record: Dict[str, Any]):
        msg = (f"epoch {record['epoch']:4d}  loss {record['loss']:.4f}  "
               f"val recall@20 {record['val']['recall@20']:.4f}  "
               f"ndcg@20 {record['val']['ndcg@20']:.4f}  "
               f"({record['seconds']:.1f}s)")
        if self.show_progress:
            tqdm.write(msg)
        elif is_main():
            log.info(msg)

    def _finish(self, state: Dict[str, Any],
                best_model: Optional[Dict[str, torch.Tensor]]
                ) -> Dict[str, Any]:
        if best_model is not None:
            self.model.load_state_dict(best_model)
        val, test = self.evaluate('val'), self.evaluate('test')
        epochs = max(state['epoch'], 1)
        result = {
            'meta': self.meta,
            'best_epoch': state['best_epoch'],
            'epochs_run': state['epoch'],
            'early_stopped': bool(state['finished']),
            'seconds_per_epoch': state['train_seconds'] / epochs,
            'train_seconds': state['train_seconds'],
            'peak_memory_mb': peak_memory_mb(self.device),
            'device': str(self.device),
            'val': val,
            'test': test,
            'config': asdict(self.config),
        }
        if self.world_size > 1:
            result['world_size'] = self.world_size
            result['rank_fingerprints'] = parameter_fingerprints(self.model)
        if self.write:  # history.json is already written after every epoch
            atomic_write_json(result, self._path('metrics.json'))
        return result


class _LossModule(torch.nn.Module):
    r"""``model.loss`` as a ``forward``, for
    :class:`~torch.nn.parallel.DistributedDataParallel`."""
    def __init__(self, model: Recommender):
        super().__init__()
        self.model = model

    def forward(self, *args, **kwargs):
        return self.model.loss(*args, **kwargs)


def _distributed_loss(model: Recommender, device: torch.device):
    r"""``model.loss`` through DDP: the recommender's gradients are averaged
    over ranks during backward. The critic (updated inside ``loss``, by its
    own optimiser) is left out of DDP; the trainer averages its gradients
    itself."""
    from torch.nn.parallel import DistributedDataParallel as DDP
    module = _LossModule(model)
    critic = {id(p) for p in model.discriminator_parameters()}
    ignore = [n for n, p in module.named_parameters() if id(p) in critic]
    DDP._set_params_and_buffers_to_ignore_for_model(module, ignore)
    # Buffers (learned graphs, features) are kept identical by the model;
    # broadcasting them every step would only cost time. (The option was
    # renamed in newer PyTorch.)
    sig = inspect.signature(DDP.__init__).parameters
    no_sync = {'forward_sync_buffers': False} \
        if 'forward_sync_buffers' in sig else {'broadcast_buffers': False}
    return DDP(module, device_ids=[device] if device.type == 'cuda' else None,
               **no_sync)


def format_table(rows: List[Tuple[str, Dict[str, float]]],
                 ks=DEFAULT_KS) -> str:
    r"""A Markdown table of Recall / NDCG / Precision / Hit / MAP at ``ks``
    for named metric dicts (``[("val", {...}), ("test", {...})]``)."""
    cols = [f'{m}@{k}' for k in ks for m in ('recall', 'ndcg', 'precision')]
    lines = ['| split | ' + ' | '.join(cols) + ' |',
             '|---' * (len(cols) + 1) + '|']
    for name, metrics in rows:
        lines.append(f'| {name} | ' + ' | '.join(
            f'{metrics[c]:.4f}' for c in cols) + ' |')
    return '\n'.join(lines)
