r"""MMSSL's critic: a Wasserstein critic over users' preference rows across
all items, reading them dense or in the factorised form of
:mod:`pyg_mmssl.nn.rows` that makes it cheap."""
import math
from contextlib import contextmanager
from typing import Iterator, List, Tuple, Union

import torch
from torch import Tensor
from torch.autograd.function import once_differentiable

from pyg_mmssl.nn.dropout import Dropout
from pyg_mmssl.nn.rows import CriticRows, Rows, RowSource, rows_matmul_t

CRITICS = ('dense', 'exact', 'lowrank')
Input = Union[Rows, RowSource, List[RowSource]]


class InputGradSqNorm(torch.autograd.Function):
    @staticmethod
    def forward(ctx, delta, weight):
        (num_rows, w), num_items = delta.shape, weight.size(1)
        # Gram: 2 w^2 I + 2 R w^2 multiply-adds with the backward; per row:
        # 3 R w I.
        ctx.gram = 2 * w * (num_items + num_rows) < 3 * num_rows * num_items
        if ctx.gram:
            out = delta @ (weight @ weight.t())  # delta W W^T
            sq = (out * delta).sum(-1)
        else:
            out = delta @ weight  # delta W
            sq = torch.linalg.vector_norm(out, dim=-1).square()
        ctx.save_for_backward(delta, weight, out)
        return sq

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_sq):
        delta, weight, out = ctx.saved_tensors
        grad_delta = grad_weight = None
        scale = 2 * grad_sq.unsqueeze(-1)
        if ctx.gram:
            if ctx.needs_input_grad[0]:
                grad_delta = scale * out
            if ctx.needs_input_grad[1]:  # 2 G W, G = delta^T diag(g) delta
                gram = delta.t() @ (scale * delta)
                # As (W^T G)^T: the layout of ``weight``, a view of W^T.
                grad_weight = (weight.t() @ gram).t()
        else:
            out = scale * out
            if ctx.needs_input_grad[0]:
                grad_delta = out @ weight.t()
            if ctx.needs_input_grad[1]:
                grad_weight = (out.t() @ delta).t()
        return grad_delta, grad_weight


def input_grad_sq_norm(delta: Tensor, weight: Tensor) -> Tensor:
    r""":math:`\|\boldsymbol{\delta}_b \mathbf{W}\|^2` per row: the squared
    norm of a critic's input gradient, given ``delta``
    :math:`\boldsymbol{\delta}` ``[R, w]``, the gradient with respect to its
    first layer's output, and that layer's ``weight`` ``[w, I]``;
    differentiable (first order). Through the Gram matrix
    :math:`\mathbf{W}\mathbf{W}^\top` when that costs fewer operations,
    forward and backward (:math:`2 w^2 I + 2 R w^2` against :math:`3 R w
    I`), else by the per-row products :math:`\boldsymbol{\delta}
    \mathbf{W}`."""
    return InputGradSqNorm.apply(delta, weight)


class InputLayer(torch.nn.Module):
    r"""The critic's :math:`I`-wide first layer :math:`\mathbf{x}
    \mapsto \mathbf{x} \mathbf{W}_1^\top`, without bias (batch norm
    follows; a bias would get zero gradient), initialised as
    :class:`torch.nn.Linear`. The parameter is :math:`\mathbf{W}_1^\top`
    ``[in, out]`` (:obj:`weight_t`): the sparse products read its rows, and
    its gradients and optimiser state then all share that layout, so a step
    makes no ``[in, out]`` copies. :obj:`weight` is the ``[out, in]`` view."""
    def __init__(self, in_channels: int, out_channels: int):
        super().__init__()
        self.in_channels, self.out_channels = in_channels, out_channels
        self.weight_t = torch.nn.Parameter(
            torch.empty(in_channels, out_channels))
        self.reset_parameters()

    @property
    def weight(self) -> Tensor:
        return self.weight_t.t()

    @torch.no_grad()
    def reset_parameters(self):
        # Drawn in torch.nn.Linear's order: the same values for a seed.
        weight = torch.empty(self.out_channels, self.in_channels,
                             device=self.weight_t.device,
                             dtype=self.weight_t.dtype)
        torch.nn.init.kaiming_uniform_(weight, a=math.sqrt(5))
        self.weight_t.copy_(weight.t())

    def forward(self, x: Tensor) -> Tensor:
        return x @ self.weight_t

    def __repr__(self) -> str:
        return (f'{self.__class__.__name__}({self.in_channels}, '
                f'{self.out_channels})')


class Discriminator(torch.nn.Module):
    r"""MMSSL's critic over users' preference distributions across all
    :math:`I` items, an MLP :math:`I \to I/4 \to I/8 \to 1` with batch
    norm, LeakyReLU and dropout, trained as a Wasserstein critic with gradient
    penalty (WGAN-GP, `"Improved Training of Wasserstein GANs"
    <https://arxiv.org/abs/1704.00028>`_):

    .. math::
        \mathcal{L}_D = -\mathbb{E}[D(\mathbf{r})] + \mathbb{E}[D(\mathbf{s})]
        + \lambda_{gp} \, \mathbb{E}\big[(\|\nabla_{\hat{\mathbf{x}}}
        D(\hat{\mathbf{x}})\|_2 - 1)^2\big], \quad
        \hat{\mathbf{x}} = \alpha \mathbf{r} + (1 - \alpha) \mathbf{s}

    Args:
        num_items (int): Input width :math:`I`.
        critic (str): ``"dense"``: the method as stated, on dense ``[B, I]``
            rows (the reference). ``"exact"``: the same critic and the same
            maths on :class:`CriticRows`: the first layer
            :math:`\mathbf{W}_1` is applied to the low-rank and sparse parts
            separately, each row once; interpolates are
            :math:`\hat{\mathbf{x}}\mathbf{W}_1^\top = \alpha
            \mathbf{r}\mathbf{W}_1^\top + (1 - \alpha)
            \mathbf{s}\mathbf{W}_1^\top`; the penalty's input gradient is
            :math:`\boldsymbol{\delta}\mathbf{W}_1` with
            :math:`\boldsymbol{\delta} = \partial D / \partial
            (\hat{\mathbf{x}}\mathbf{W}_1^\top)`, its norm taken through
            :func:`input_grad_sq_norm`. ``"lowrank"`` (a different, cheaper
            model): the MLP :math:`I \to r \to r/2 \to 1` with
            :math:`r` = :obj:`rank`, on :class:`CriticRows` like
            ``"exact"``. Its first layer is a rank-:math:`r` projection of the
            rows, and no layer is quadratic in :math:`I` (with widths
            :math:`I/4 \to I/8` after a rank-:math:`r` layer, the second
            layer alone would cost :math:`I^2/32` per row), so a step costs
            :math:`O((I + B) r d + \mathrm{nnz} \cdot r)`.
            (default: :obj:`"lowrank"`)
        rank (int): Rank of the ``"lowrank"`` first layer.
            (default: :obj:`64`)
        dropout ((float, float)): Dropout after the two hidden layers.
            (default: :obj:`(0.31, 0.5)`)
        negative_slope (float): LeakyReLU slope (must not be 1, which would
            make the critic linear). (default: :obj:`0.2`)
    """
    def __init__(self, num_items: int, critic: str = 'lowrank',
                 rank: int = 64,
                 dropout: Tuple[float, float] = (0.31, 0.5),
                 negative_slope: float = 0.2):
        super().__init__()
        if critic not in CRITICS:
            raise ValueError(f"unknown critic '{critic}', expected one of "
                             f"{CRITICS}")
        if negative_slope == 1:
            raise ValueError("negative_slope=1 makes the critic linear")
        self.critic = critic
        if critic == 'lowrank':
            h1, h2 = rank, max(rank // 2, 1)
        else:
            h1, h2 = max(num_items // 4, 1), max(num_items // 8, 1)
        Linear = torch.nn.Linear
        act = torch.nn.LeakyReLU(negative_slope)
        # ``input`` is the only I-wide layer; no bias before batch norm
        # (it would get zero gradient).
        self.input = InputLayer(num_items, h1)
        self.head = torch.nn.Sequential(
            torch.nn.BatchNorm1d(h1), act, Dropout(dropout[0]),
            Linear(h1, h2, bias=False), torch.nn.BatchNorm1d(h2), act,
            Dropout(dropout[1]), Linear(h2, 1))

    @property
    def factorised(self) -> bool:
        r"""Whether the critic reads :class:`CriticRows`."""
        return self.critic != 'dense'

    def reset_parameters(self):
        for module in self.modules():
            if module is not self and hasattr(module, 'reset_parameters'):
                module.reset_parameters()

    def read(self, x: Input) -> Rows:
        r"""The rows of ``x`` in the form this critic reads: a
        :class:`RowSource` is built dense for ``"dense"`` and as
        :class:`CriticRows` otherwise; a list of sources (one per generator)
        becomes one dense tensor (rows concatenated) or a list of
        :class:`CriticRows`. Tensors and :class:`CriticRows` pass as they
        are."""
        if isinstance(x, RowSource):
            return x.factorised() if self.factorised else x.dense()
        if isinstance(x, list) and x and isinstance(x[0], RowSource):
            rows = [self.read(source) for source in x]
            return rows if self.factorised else torch.cat(rows)
        return x

    def first_layer(self, x: Rows) -> Tensor:
        r""":math:`\mathbf{x}\mathbf{W}_1^\top` of dense rows, of
        :class:`CriticRows`, or of a list of them (concatenated)."""
        if isinstance(x, Tensor):
            return self.input(x)
        rows = [x] if isinstance(x, CriticRows) else list(x)
        return rows_matmul_t(rows, self.input.weight)

    def forward(self, x: Input) -> Tensor:
        return self.head(self.first_layer(self.read(x))).view(-1)

    @contextmanager
    def frozen(self) -> Iterator[None]:
        r"""The critic as a fixed function, for the generator's term: its
        parameters excluded from autograd (the critic does not use that
        gradient) and its batch-norm running statistics left as they are
        (batch norm still normalises by the batch in training mode)."""
        flags = [p.requires_grad for p in self.parameters()]
        norms = [m for m in self.modules()
                 if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
        tracking = [m.track_running_stats for m in norms]
        self.requires_grad_(False)
        for m in norms:
            m.track_running_stats = False
        try:
            yield
        finally:
            for p, flag in zip(self.parameters(), flags):
                p.requires_grad_(flag)
            for m, flag in zip(norms, tracking):
                m.track_running_stats = flag

    def gradient_penalty(self, real: Tensor, fake: Tensor) -> Tensor:
        r""":math:`\mathbb{E}[(\|\nabla D(\hat{\mathbf{x}})\|_2 - 1)^2]` at
        random interpolates of paired dense real and fake rows."""
        alpha = torch.rand(real.size(0), 1, device=real.device,
                           dtype=real.dtype)
        x_hat = (alpha * real + (1 - alpha) * fake).requires_grad_(True)
        grad, = torch.autograd.grad(self(x_hat).sum(), x_hat,
                                    create_graph=True)
        return (grad.norm(2, dim=1) - 1).pow(2).mean()

    def loss(self, real: Input, fake: Input,
             gp_weight: float = 0.3) -> Tensor:
        r"""The critic loss :math:`\mathcal{L}_D` for ``B`` ``real`` rows and
        ``M B`` ``fake`` rows (``M`` generators, each paired with the same
        real rows for the penalty): :class:`RowSource` (fake: a list of
        ``M``), or already in the critic's form (:meth:`read`): dense
        ``[B, I]`` / ``[M B, I]`` tensors for the ``"dense"`` critic,
        :class:`CriticRows` (fake: a list of ``M``) otherwise. Inputs are
        detached."""
        real, fake = self.read(real), self.read(fake)
        if isinstance(real, Tensor):
            real, fake = real.detach(), fake.detach()
            repeats = fake.size(0) // real.size(0)
            gp = self.gradient_penalty(real.repeat(repeats, 1), fake)
            return -self(real).mean() + self(fake).mean() + gp_weight * gp

        h = self.first_layer([real.detach()] + [r.detach() for r in fake])
        h_real, h_fake = h[:real.num_rows], h[real.num_rows:]
        h_real_pairs = h_real.repeat(h_fake.size(0) // h_real.size(0), 1)
        # Same random draws, in the same order, as the dense path.
        alpha = torch.rand(h_fake.size(0), 1, device=h_fake.device,
                           dtype=h_fake.dtype)
        h_hat = alpha * h_real_pairs + (1 - alpha) * h_fake
        delta, = torch.autograd.grad(self.head(h_hat).sum(), h_hat,
                                     create_graph=True)
        sq = input_grad_sq_norm(delta, self.input.weight)
        gp = (sq.clamp_min(1e-24).sqrt() - 1).pow(2).mean()
        return (-self.head(h_real).mean() + self.head(h_fake).mean() +
                gp_weight * gp)

    def __repr__(self) -> str:
        return (f'{self.__class__.__name__}({self.input}, '
                f'critic={self.critic})')
