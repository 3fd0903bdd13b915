r"""The training protocol: BPR mini-batches, early stopping on validation
Recall@20, test reported once at the best validation epoch, seeded, with
atomic checkpoints and resume.

The trainer knows a model only through :class:`~pyg_mmssl.nn.models.base.
Recommender`'s interface: ``forward`` and ``loss`` (named terms, ``"loss"``
minimised), ``get_embedding`` for evaluation, and the hooks its
``schedule()`` asks for: a critic trained by its own optimiser on
``critic_loss``, and ``refresh_graphs``. The whole step is
:meth:`Trainer.train_step`.
"""
import inspect
import logging
import math
import os
import os.path as osp
import random
import resource
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from typing import Any, Callable, Dict, List, Optional, Tuple

import numpy as np
import torch
from torch.profiler import record_function
from torch_geometric.data import HeteroData
from tqdm.auto import tqdm

from pyg_mmssl.data.graph import EDGE, split_edge_index, to_csr
from pyg_mmssl.data.sampler import BPRSampler
from pyg_mmssl.device import check_device, resolve_device
from pyg_mmssl.distributed import (all_gather_cat, average_gradients_,
                                   broadcast_, shard,
                                   get_rank, get_world_size, is_main,
                                   parameter_fingerprints)
from pyg_mmssl.files import CheckpointError, atomic_torch_save, \
    atomic_write_json, read_checkpoint
from pyg_mmssl.metrics import DEFAULT_KS, evaluate
from pyg_mmssl.nn.models.base import Recommender, UserSharding
from pyg_mmssl.ranking import CSR

log = logging.getLogger(__name__)

SELECTION_METRIC = 'recall@20'
RUN_FILES = ('metrics.json', 'history.json', 'last.pt', 'best.pt')
# A loss this many times its first value (in magnitude) gets a warning.
LOSS_GROWTH_WARNING = 100.0
#: The weights of the popularity adjustment that
#: :meth:`Trainer.adjust_popularity` tries: 0 and a doubling grid.
POPULARITY_WEIGHTS = (0.0, 0.05, 0.1, 0.2, 0.4, 0.8, 1.6, 3.2, 6.4, 12.8,
                      25.6)


class NonFiniteLoss(RuntimeError):
    r"""A loss term, or after an epoch a weight, became NaN or infinite.
    Training stopped before the non-finite value reached any weight or file:
    ``last.pt`` and ``best.pt`` keep the last finite state."""


def check_out_dir(out: str, resume: bool = False) -> None:
    r"""Makes sure a run can write to the folder ``out`` before it trains:
    ``out`` is a folder (created if missing) that this process can write to
    and, unless ``resume``, holds none of a run's files (:data:`RUN_FILES`),
    so that nothing is overwritten."""
    if osp.exists(out) and not osp.isdir(out):
        raise FileExistsError(f"output folder '{out}' is a file; pass a "
                              f"folder")
    if not resume:
        present = [f for f in RUN_FILES if osp.exists(osp.join(out, f))]
        if present:
            raise FileExistsError(
                f"'{out}' already holds a run ({', '.join(present)}); pass "
                f"--resume to continue it or --out to start a new one "
                f"(nothing was overwritten)")
    try:
        os.makedirs(out, exist_ok=True)
        with tempfile.TemporaryFile(dir=out):
            pass
    except OSError as e:
        raise OSError(f"cannot write to output folder '{out}': "
                      f"{e.strerror or e}") from e


@dataclass
class TrainConfig:
    r"""Options of :class:`Trainer` (each is a CLI flag of ``pyg-mmssl
    train``; presets may set other values).

    Args:
        epochs (int): Most training epochs. (default: :obj:`1000`)
        batch_size (int): BPR triples per step. (default: :obj:`2048`)
        lr (float): Learning rate of the recommender's optimiser.
            (default: :obj:`1e-3`)
        lr_decay (float): Factor :math:`d` of the learning rate per epoch:
            epoch :math:`t` (from 1) trains at :math:`\max(\mathrm{lr}
            \cdot d^{t - 1}, \mathrm{lr\_min})`. (default: :obj:`1.0`)
        lr_min (float): The floor of the decaying learning rate.
            (default: :obj:`0.0`)
        weight_decay (float): Optimiser weight decay. (default: :obj:`0.0`)
        optimizer (str): ``"adam"`` or ``"adamw"``. (default: :obj:`"adam"`)
        patience (int): Epochs without a better validation Recall@20 before
            stopping early. (default: :obj:`20`)
        eval_every (int): Epochs between validation evaluations.
            (default: :obj:`1`)
        ks (tuple): Cut-offs of the reported metrics (20 is always added,
            it selects the best epoch). (default: :obj:`(10, 20, 50)`)
        eval_chunk_size (int): Users ranked at a time in evaluation.
            (default: :obj:`1024`)
        mask_val_at_test (bool): Also exclude validation items when ranking
            for test. (default: :obj:`False`)
        adjust_popularity (bool): After training, rank by the model's scores
            plus :math:`w` times the items' centred log training counts,
            with :math:`w` of :data:`POPULARITY_WEIGHTS` (0 included) that
            has the best validation Recall@20 (see
            :meth:`Trainer.adjust_popularity`). (default: :obj:`False`)
        seed (int): Seed of initialisation, sampling and dropout.
            (default: :obj:`2024`)
        device (str): ``"auto"`` (CUDA when available), ``"cpu"``,
            ``"cuda"`` or ``"cuda:N"``. (default: :obj:`"auto"`)
        quiet (bool): No progress bars or per-epoch lines.
            (default: :obj:`False`)
        discriminator_lr (float): Learning rate of the critic's optimiser
            (models with a critic). (default: :obj:`3e-4`)
        discriminator_betas (tuple): Adam betas of the critic's optimiser.
            (default: :obj:`(0.5, 0.9)`)
    """
    epochs: int = 1000
    batch_size: int = 2048
    lr: float = 1e-3
    lr_decay: float = 1.0
    lr_min: float = 0.0
    weight_decay: float = 0.0
    optimizer: str = 'adam'
    patience: int = 20
    eval_every: int = 1
    ks: Tuple[int, ...] = DEFAULT_KS
    eval_chunk_size: int = 1024
    mask_val_at_test: bool = False
    adjust_popularity: bool = False
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
        if not 0 < self.lr_decay <= 1:
            raise ValueError(f"lr_decay must be in (0, 1], got "
                             f"{self.lr_decay}")
        if not 0 <= self.lr_min <= self.lr:
            raise ValueError(f"lr_min must be in [0, lr], got {self.lr_min}")
        if any(k <= 0 for k in self.ks):
            raise ValueError(f"ks must be positive cut-offs, got "
                             f"{list(self.ks)}")
        check_device(self.device)
        if 20 not in self.ks:
            self.ks = tuple(sorted(set(self.ks) | {20}))


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
    parameters' device has one, else the default implementation. (torch 2.13's CPU kernel reads a
    parameter, its gradient and its state as flat memory, so they must share
    one layout: autograd's gradient accumulation makes sure of that.)"""
    params = list(params)
    try:
        return optimizer_cls(params, fused=True, **kwargs)
    except RuntimeError:
        return optimizer_cls(params, **kwargs)


def split_patterns(data: HeteroData, edge_type=EDGE) -> Dict[str, CSR]:
    r"""``{split: CSR pattern}`` of the training, validation and test
    interactions of ``data`` (users x items)."""
    src, _, dst = edge_type
    size = (data[src].num_nodes, data[dst].num_nodes)
    return {split: to_csr(split_edge_index(data, split, edge_type), *size)
            for split in ('train', 'val', 'test')}


@torch.no_grad()
def evaluate_split(model: Recommender, split: str, patterns: Dict[str, CSR],
                   ks=DEFAULT_KS, chunk_size: int = 1024,
                   mask_val_at_test: bool = False,
                   distributed: bool = False) -> Dict[str, float]:
    r"""Full-ranking metrics of ``model`` on ``"val"`` or ``"test"``
    (``patterns`` from :func:`split_patterns`): a user's training items are
    never ranked, nor, for test with ``mask_val_at_test``, its validation
    items."""
    if split not in ('val', 'test'):
        raise ValueError(f"unknown split '{split}', expected 'val' or 'test'")
    model.eval()
    emb = model.ranking_embedding()
    exclude = [patterns['train']]
    if split == 'test' and mask_val_at_test:
        exclude.append(patterns['val'])
    return evaluate(emb.user, emb.item, patterns[split], exclude, ks,
                    chunk_size, distributed=distributed)


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
        self.patterns = split_patterns(data, edge_type)
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
        # A model that does not learn (MostPop) is evaluated as built.
        self.optimizer = _fused(opt_cls, model.recommender_parameters(),
                                lr=config.lr,
                                weight_decay=config.weight_decay) \
            if model.trainable else None
        d_params = model.discriminator_parameters()
        self.d_optimizer = _fused(
            torch.optim.Adam, d_params, lr=config.discriminator_lr,
            betas=config.discriminator_betas) if d_params else None
        self.show_progress = (not config.quiet and sys.stderr.isatty() and
                              is_main())
        self.schedule = model.schedule()
        if bool(self.schedule.critic_steps) != bool(d_params):
            raise ValueError(f"{type(model).__name__}: schedule() asks for "
                             f"{self.schedule.critic_steps} critic step(s) but "
                             f"it has {len(d_params)} critic parameter(s)")
        self._position = (1, 0)  # (epoch, step) in progress, for messages
        self._warned_growth = False
        self.forward_step = _ForwardStep(model)
        self.sharding = None
        if self.world_size > 1 and model.trainable:
            self.forward_step = _distributed(self.forward_step, model,
                                             self.device)
            self.sharding = UserSharding(shard, lambda t: broadcast_(
                t.clone()), all_gather_cat)
            for p in d_params:
                broadcast_(p.data)

    # Evaluation ############################################################

    def evaluate(self, split: str) -> Dict[str, float]:
        r"""Full-ranking metrics on ``"val"`` or ``"test"`` (training items,
        and with ``mask_val_at_test`` validation items, excluded)."""
        cfg = self.config
        return evaluate_split(self.model, split, self.patterns, cfg.ks,
                              cfg.eval_chunk_size, cfg.mask_val_at_test,
                              distributed=self.world_size > 1)

    # Training ##############################################################

    def update_critic(self, user: torch.Tensor, out) -> Optional[float]:
        r"""The model's ``schedule().critic_steps`` critic updates on this
        step's forward output ``out``; returns the mean critic loss
        (:obj:`None` for a model without a critic)."""
        steps = self.schedule.critic_steps
        if not steps:
            return None
        total = 0.
        for _ in range(steps):
            with record_function('step.critic'):
                d_loss = self.model.critic_loss(user, out)
                value = float(d_loss.detach())
                self._check_finite('d', value)
                self.d_optimizer.zero_grad(set_to_none=True)
                d_loss.backward()
                average_gradients_(self.model.discriminator_parameters())
                self.d_optimizer.step()
            total += value
        return total / steps

    def train_step(self, batch, state: Dict[str, Any]) -> Dict[str, float]:
        r"""One optimisation step on a BPR batch: the model's forward pass,
        its critic updates, its loss terms, a graph refresh when the model's
        :meth:`~pyg_mmssl.nn.models.base.Recommender.schedule` has one due,
        and the recommender's update. Returns the loss terms (with ``"d"``,
        the critic's loss, for models with a critic)."""
        user, pos, neg = (t.to(self.device) for t in batch)
        out, terms, d_loss = self.forward_step(user, pos, neg,
                                               self.update_critic)
        values = {k: float(v.detach()) for k, v in terms.items()}
        if d_loss is not None:
            values['d'] = d_loss
        # The parts first: the message names the term that broke the sum.
        for name in sorted(values, key=lambda name: name == 'loss'):
            self._check_finite(name, values[name])
        self._check_growth(values['loss'], state)
        every = self.schedule.refresh_every
        if every and state['step'] % every == 0:
            with record_function('step.refresh'):
                self.model.refresh_graphs(out, self.sharding)
        self.optimizer.zero_grad(set_to_none=True)
        with record_function('step.backward'):
            terms['loss'].backward()
        with record_function('step.optimizer'):
            self.optimizer.step()
        state['step'] += 1
        return values

    def _stopped(self, what: str) -> NonFiniteLoss:
        epoch, step = self._position
        if not self.write:
            kept = 'no run files are written (no output folder)'
        elif epoch > 1:
            kept = (f"{self._path('last.pt')} keeps epoch {epoch - 1} and "
                    f"best.pt the best epoch so far")
        else:
            kept = 'no checkpoint was written (the first epoch did not end)'
        return NonFiniteLoss(
            f"{what} at epoch {epoch}, step {step} of {len(self.sampler)}: "
            f"training stopped; {kept}; try a lower --lr (now "
            f"{self.config.lr:g})")

    def _check_finite(self, name: str, value: float):
        if not math.isfinite(value):
            raise self._stopped(f"loss term '{name}' is {value}")

    def _check_weights(self):
        for name, param in self.model.named_parameters():
            if not bool(torch.isfinite(param).all()):
                raise self._stopped(f"weight '{name}' became non-finite")

    def _check_growth(self, loss: float, state: Dict[str, Any]):
        first = state.setdefault('first_loss', loss)
        if (not self._warned_growth and first != 0
                and abs(loss) > LOSS_GROWTH_WARNING * abs(first)):
            self._warned_growth = True
            epoch, step = self._position
            log.warning("the loss grew from %.4g (first step) to %.4g at "
                        "epoch %d, step %d: training may be diverging; a "
                        "lower --lr (now %g) may help", first, loss, epoch,
                        step, self.config.lr)

    def train_epoch(self, epoch: int, state: Dict[str, Any]
                    ) -> Dict[str, float]:
        self.model.train()
        sums: Dict[str, float] = {}
        bar = tqdm(self.sampler, total=len(self.sampler), leave=False,
                   desc=f'epoch {epoch}', disable=not self.show_progress)
        for step, batch in enumerate(bar, start=1):
            self._position = (epoch, step)
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

    def fit(self, resume: bool = False,
            on_epoch: Optional[Callable[[int, Dict[str, float]], None]] = None,
            test: bool = True) -> Dict[str, Any]:
        r"""Trains until early stopping (or ``epochs``), then evaluates the
        best-validation model on test. Returns what ``metrics.json`` holds.
        A model that does not learn (:attr:`trainable` false:
        :class:`MostPop`) is evaluated as built: ``best_epoch`` 0 and an
        empty history.

        Args:
            resume (bool): Continue from ``last.pt`` in ``out``.
                (default: :obj:`False`)
            on_epoch (callable, optional): Called as ``on_epoch(epoch,
                val_metrics)`` after each validation, once the epoch is
                recorded (and saved); an exception it raises stops training
                there (a hyper-parameter search prunes a trial this way).
                (default: :obj:`None`)
            test (bool): Evaluate the best model on test. Without it the
                result has no ``"test"`` entry and the test split is never
                ranked (as in model selection). (default: :obj:`True`)
        """
        cfg = self.config
        seed_everything(cfg.seed)
        state: Dict[str, Any] = {
            'epoch': 0, 'step': 0, 'best_val': None, 'best_epoch': None,
            'bad_epochs': 0, 'history': [], 'train_seconds': 0.0,
            'finished': False,
        }
        best_model: Optional[Dict[str, torch.Tensor]] = None
        last = self._path('last.pt')
        if self.write:
            check_out_dir(self.out, resume)
        if resume:
            state, best_model = self._resume(last)
        if self.optimizer is None:  # nothing to learn: evaluated as built
            state.update(best_epoch=0, finished=True)
            if self.write:  # best.pt serves `evaluate` and `recommend`
                self._save_best(self.model.state_dict(), 0)
                atomic_write_json([], self._path('history.json'))
            return self._finish(state, None, test)

        bar = tqdm(total=cfg.epochs, initial=state['epoch'], desc='training',
                   disable=not self.show_progress)
        while not state['finished'] and state['epoch'] < cfg.epochs:
            epoch = state['epoch'] + 1
            for group in self.optimizer.param_groups:
                group['lr'] = max(cfg.lr * cfg.lr_decay ** (epoch - 1),
                                  cfg.lr_min)
            start = time.perf_counter()
            losses = self.train_epoch(epoch, state)
            self._check_weights()  # before anything is evaluated or saved
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
                        self._save_best(best_model, epoch)
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
            if on_epoch is not None and 'val' in record:
                on_epoch(epoch, record['val'])
        bar.close()
        return self._finish(state, best_model, test)

    def _save_best(self, model_state: Dict[str, torch.Tensor], epoch: int):
        atomic_torch_save({'meta': self.meta, 'config': asdict(self.config),
                           'model': model_state, 'epoch': epoch},
                          self._path('best.pt'))

    def _resume(self, last: Optional[str]):
        r"""Restores the state of ``last`` (``last.pt``) and the best
        model of ``best.pt``, after checking that they belong to this run."""
        if not last or not osp.exists(last):
            raise FileNotFoundError(
                f"--resume: no checkpoint '{last}' to resume from")
        try:
            ckpt = read_checkpoint(last, self.device, required=(
                'meta', 'model', 'optimizer', 'd_optimizer', 'state', 'rng'))
        except CheckpointError as e:
            raise ValueError(f"--resume: '{last}' is not a checkpoint this "
                             f"version can resume ({e.reason}); start a new "
                             f"run with another --out") from e
        self._check_same_run(ckpt['meta'], last)
        try:
            self.model.load_state_dict(ckpt['model'])
            self.optimizer.load_state_dict(ckpt['optimizer'])
            if self.d_optimizer is not None:
                self.d_optimizer.load_state_dict(ckpt['d_optimizer'])
        except (RuntimeError, ValueError, KeyError) as e:
            first = str(e).strip().splitlines()[0][:160]
            raise ValueError(f"--resume: the weights in '{last}' do not fit "
                             f"this model ({first})") from e
        _set_rng_state(ckpt['rng'], self.sampler)
        best_model = None
        best = self._path('best.pt')
        if osp.exists(best):
            best_ckpt = read_checkpoint(best, self.device)
            self._check_same_run(best_ckpt['meta'], best)
            best_model = best_ckpt['model']
        log.info("resumed from %s at epoch %d", last, ckpt['state']['epoch'])
        return ckpt['state'], best_model

    def _check_same_run(self, saved: Dict[str, Any], path: str):
        r"""Raises one line naming what differs between the model, its
        options and the dataset of a checkpoint's ``meta`` and this run's."""
        for key in ('model', 'dataset'):
            if key in saved and key in self.meta and \
                    saved[key] != self.meta[key]:
                raise ValueError(f"--resume: '{path}' was trained with "
                                 f"{key} '{saved[key]}', this run has "
                                 f"'{self.meta[key]}'")
        old = saved.get('model_config') or {}
        new = self.meta.get('model_config') or {}
        differ = sorted(k for k in set(old) | set(new)
                        if old.get(k) != new.get(k))
        if differ:
            was = ', '.join(f'{k}={old.get(k)!r}' for k in differ)
            now = ', '.join(f'{k}={new.get(k)!r}' for k in differ)
            raise ValueError(f"--resume: '{path}' was trained with {was}; "
                             f"this run asks for {now}")

    def _log(self, record: Dict[str, Any]):
        msg = (f"epoch {record['epoch']:4d}  loss {record['loss']:.4f}  "
               f"val recall@20 {record['val']['recall@20']:.4f}  "
               f"ndcg@20 {record['val']['ndcg@20']:.4f}  "
               f"({record['seconds']:.1f}s)")
        if self.show_progress:
            tqdm.write(msg)
        elif is_main() and not self.config.quiet:
            log.info(msg)

    @torch.no_grad()
    def adjust_popularity(self, weights=POPULARITY_WEIGHTS
                          ) -> Tuple[float, Dict[float, float]]:
        r"""Sets the model's ranking to :math:`s_{ui} + w \, p_i`
        (:meth:`~pyg_mmssl.nn.models.base.Recommender.ranking_embedding`),
        with :math:`p_i` the item's centred :math:`\log(1 + n_i)` and
        :math:`w` the one of ``weights`` with the highest validation
        Recall@20 (the smallest on ties). The model's weights do not change,
        and the test split is never ranked. Returns :math:`w` and
        ``{w: validation Recall@20}``.

        A split whose held-out items are more popular than the model's
        scores make them (a random split of interactions, where users keep
        few training items) takes a large :math:`w`; one whose held-out
        items are less popular than its training items takes 0. The idea
        is PDA's (Zhang et al., SIGIR 2021), which adjusts the
        popularity of a model's rankings by a factor chosen on validation.
        """
        curve: Dict[float, float] = {}
        for w in weights:
            self.model.popularity_weight.fill_(w)
            curve[float(w)] = self.evaluate('val')[SELECTION_METRIC]
        best = max(curve, key=lambda w: (curve[w], -w))
        self.model.popularity_weight.fill_(best)
        return best, curve

    def _finish(self, state: Dict[str, Any],
                best_model: Optional[Dict[str, torch.Tensor]],
                test: bool = True) -> Dict[str, Any]:
        if best_model is not None:
            self.model.load_state_dict(best_model)
        adjustment = {}
        if self.config.adjust_popularity:
            weight, curve = self.adjust_popularity()
            adjustment = {'popularity_weight': weight,
                          'popularity_curve': curve}
            if self.write:  # best.pt ranks as the run reports
                self._save_best(self.model.state_dict(), state['best_epoch'])
        val = self.evaluate('val')
        held_out = {'test': self.evaluate('test')} if test else {}
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
            **held_out,
            **adjustment,
            'config': asdict(self.config),
        }
        if self.world_size > 1:
            result['world_size'] = self.world_size
            result['rank_fingerprints'] = parameter_fingerprints(self.model)
        if self.write:  # history.json is already written after every epoch
            atomic_write_json(result, self._path('metrics.json'))
        return result


class _ForwardStep(torch.nn.Module):
    r"""The part of a training step before the recommender's backward pass,
    as a module (so that DDP can wrap it): the model's forward pass, the
    critic's updates on it (``update_critic``, the trainer's, passed per
    call so that the module holds no reference back to the trainer), and
    the model's loss terms. Returns ``(out, terms, critic loss)``."""
    def __init__(self, model: Recommender):
        super().__init__()
        self.model = model

    def forward(self, user, pos, neg, update_critic):
        with record_function('step.forward'):
            out = self.model()
        d_loss = update_critic(user, out)
        with record_function('step.loss'):
            terms = self.model.loss(user, pos, neg, out)
        return out, terms, d_loss


def _distributed(module: _ForwardStep, model: Recommender,
                 device: torch.device):
    r"""``module`` through DDP: the recommender's gradients are averaged
    over ranks during backward. The critic (updated by its own optimiser
    inside the step) is left out of DDP; the trainer averages its gradients
    itself."""
    from torch.nn.parallel import DistributedDataParallel as DDP
    critic = {id(p) for p in model.discriminator_parameters()}
    ignore = [n for n, p in module.named_parameters() if id(p) in critic]
    DDP._set_params_and_buffers_to_ignore_for_model(module, ignore)
    # Buffers (learned graphs, features) are kept identical by the sharded
    # refresh; broadcasting them every step would only cost time. (The option was
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
