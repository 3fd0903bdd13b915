from typing import Tuple

import torch
from torch import Tensor

CRITICS = ('dense', 'lowrank')


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
        critic (str): ``"dense"``: the first layer is a dense
            :math:`I \times I/4` matrix (as the method states). ``"lowrank"``:
            it is factorised as :math:`\mathbf{A}\mathbf{B}^\top` of rank
            :obj:`rank`, so a pass costs :math:`O(I r)` per row instead of
            :math:`O(I^2/4)` (a different, cheaper model).
            (default: :obj:`"dense"`)
        rank (int): Rank of the ``"lowrank"`` first layer.
            (default: :obj:`64`)
        dropout ((float, float)): Dropout after the two hidden layers.
            (default: :obj:`(0.31, 0.5)`)
        negative_slope (float): LeakyReLU slope (must not be 1, which would
            make the critic linear). (default: :obj:`0.2`)
    """
    def __init__(self, num_items: int, critic: str = 'dense', rank: int = 64,
                 dropout: Tuple[float, float] = (0.31, 0.5),
                 negative_slope: float = 0.2):
        super().__init__()
        if critic not in CRITICS:
            raise ValueError(f"unknown critic '{critic}', expected one of "
                             f"{CRITICS}")
        if negative_slope == 1:
            raise ValueError("negative_slope=1 makes the critic linear")
        self.critic = critic
        h1, h2 = max(num_items // 4, 1), max(num_items // 8, 1)
        Linear = torch.nn.Linear
        # No bias before batch norm: it would be cancelled (zero gradient).
        first = Linear(num_items, h1, bias=False) if critic == 'dense' else \
            torch.nn.Sequential(Linear(num_items, rank, bias=False),
                                Linear(rank, h1, bias=False))
        act = torch.nn.LeakyReLU(negative_slope)
        self.net = torch.nn.Sequential(
            first, torch.nn.BatchNorm1d(h1), act, torch.nn.Dropout(dropout[0]),
            Linear(h1, h2, bias=False), torch.nn.BatchNorm1d(h2), act,
            torch.nn.Dropout(dropout[1]), Linear(h2, 1))

    def reset_parameters(self):
        for module in self.modules():
            if module is not self and hasattr(module, 'reset_parameters'):
                module.reset_parameters()

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x).view(-1)

    def gradient_penalty(self, real: Tensor, fake: Tensor) -> Tensor:
        r""":math:`\mathbb{E}[(\|\nabla D(\hat{\mathbf{x}})\|_2 - 1)^2]` at
        random interpolates of paired real and fake rows."""
        alpha = torch.rand(real.size(0), 1, device=real.device,
                           dtype=real.dtype)
        x_hat = (alpha * real + (1 - alpha) * fake).requires_grad_(True)
        grad, = torch.autograd.grad(self(x_hat).sum(), x_hat,
                                    create_graph=True)
        return (grad.norm(2, dim=1) - 1).pow(2).mean()

    def loss(self, real: Tensor, fake: Tensor, gp_weight: float = 0.3
             ) -> Tensor:
        r"""The critic loss :math:`\mathcal{L}_D` for ``real`` rows
        ``[B, I]`` and ``fake`` rows ``[M B, I]`` (``M`` generators, each
        paired with the same real rows for the penalty). Inputs are
        detached."""
        real, fake = real.detach(), fake.detach()
        repeats = fake.size(0) // real.size(0)
        gp = self.gradient_penalty(real.repeat(repeats, 1), fake)
        return -self(real).mean() + self(fake).mean() + gp_weight * gp

    def __repr__(self) -> str:
        return (f'{self.__class__.__name__}({self.net[0]}, '
                f'critic={self.critic})')
