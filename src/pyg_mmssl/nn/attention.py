import math
from typing import Tuple

import torch
import torch.nn.functional as F
from torch import Tensor


class ModalityAttention(torch.nn.Module):
    r"""Multi-head self-attention across modalities (MMSSL's cross-modal
    dependency encoder): each node's :math:`|M|` modality-aware embeddings
    form a sequence, attend to each other, and are averaged:

    .. math::
        \mathbf{Z} = \frac{1}{|M|} \sum_{m} \mathrm{MHA}(\mathbf{H})_m,
        \qquad \mathrm{MHA}(\mathbf{H}) = \big\Vert_{h=1}^{H}
        \mathrm{softmax}\Big(\frac{\mathbf{H}\mathbf{W}^Q_h
        (\mathbf{H}\mathbf{W}^K_h)^\top}{\sqrt{d/H}}\Big)
        \mathbf{H}\mathbf{W}^V_h \, \mathbf{W}^O

    with learned query, key, value and output projections: the parameters
    and the function of :class:`torch.nn.MultiheadAttention`. Its sequences
    are only :math:`|M|` long, so the scores and the weighted sum are
    computed elementwise rather than as :math:`N \cdot H` tiny matrix
    products, and the output projection, being affine, is applied once to
    the mean over modalities: faster, and fewer tensors kept for the
    backward pass.

    Args:
        dim (int): Embedding size :math:`d`.
        heads (int): Number of heads :math:`H` (divides :obj:`dim`).
            (default: :obj:`4`)
        bias (bool): Whether the projections have biases (the method's
            have). (default: :obj:`True`)

    Shapes:
        - **input:** :math:`(N, |M|, d)`
        - **output:** fused :math:`(N, d)` and attention weights
          :math:`(N, H, |M|, |M|)`
    """
    def __init__(self, dim: int, heads: int = 4, bias: bool = True):
        super().__init__()
        if dim % heads != 0:
            raise ValueError(f"embedding size {dim} is not divisible by "
                             f"{heads} heads")
        self.attn = torch.nn.MultiheadAttention(dim, heads, bias=bias,
                                                batch_first=True)

    def reset_parameters(self):
        self.attn._reset_parameters()

    def forward(self, x: Tensor) -> Tuple[Tensor, Tensor]:
        (N, M, d), H = x.shape, self.attn.num_heads
        qkv = F.linear(x, self.attn.in_proj_weight, self.attn.in_proj_bias)
        q, k, v = qkv.view(N, M, 3, H, d // H).unbind(2)  # [N, M, H, d/H]
        score = (q.unsqueeze(2) * k.unsqueeze(1)).sum(-1)  # [N, M, M, H]
        weights = torch.softmax(score / math.sqrt(d // H), dim=2)
        out = (weights.unsqueeze(-1) * v.unsqueeze(1)).sum(2)  # [N, M, H, .]
        out = F.linear(out.mean(dim=1).reshape(N, d),
                       self.attn.out_proj.weight, self.attn.out_proj.bias)
        return out, weights.permute(0, 3, 1, 2)

    def forward_identical(self, h: Tensor, num_modalities: int
                          ) -> Tuple[Tensor, Tensor]:
        r""":meth:`forward` of :math:`|M|` identical modality embeddings,
        every :math:`\mathbf{H}^m = \mathbf{h}`: all scores of a head are
        equal, so the weights are uniform (:math:`1 / |M|`) and the output
        is the value and output projections alone,
        :math:`\mathbf{Z} = (\mathbf{h} \mathbf{W}^V + \mathbf{b}^V)
        \mathbf{W}^O + \mathbf{b}^O` (the query and key projections get no
        gradient). Takes ``h`` as :math:`(N, d)`; same outputs as
        :meth:`forward` on ``h`` repeated :math:`|M|` times."""
        (N, d), H, M = h.shape, self.attn.num_heads, num_modalities
        w_v, b_v = self.attn.in_proj_weight[2 * d:], None
        if self.attn.in_proj_bias is not None:
            b_v = self.attn.in_proj_bias[2 * d:]
        out = F.linear(F.linear(h, w_v, b_v), self.attn.out_proj.weight,
                       self.attn.out_proj.bias)
        weights = h.new_full((1, 1, 1, 1), 1 / M).expand(N, H, M, M)
        return out, weights

    def __repr__(self) -> str:
        return (f'{self.__class__.__name__}({self.attn.embed_dim}, '
                f'heads={self.attn.num_heads})')
