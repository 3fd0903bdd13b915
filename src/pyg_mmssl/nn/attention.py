from typing import Tuple

import torch
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

    with learned query, key, value and output projections.

    Args:
        dim (int): Embedding size :math:`d`.
        heads (int): Number of heads :math:`H` (divides :obj:`dim`).
            (default: :obj:`4`)

    Shapes:
        - **input:** :math:`(N, |M|, d)`
        - **output:** fused :math:`(N, d)` and attention weights
          :math:`(N, H, |M|, |M|)`
    """
    def __init__(self, dim: int, heads: int = 4):
        super().__init__()
        if dim % heads != 0:
            raise ValueError(f"embedding size {dim} is not divisible by "
                             f"{heads} heads")
        self.attn = torch.nn.MultiheadAttention(dim, heads, batch_first=True)

    def reset_parameters(self):
        self.attn._reset_parameters()

    def forward(self, x: Tensor) -> Tuple[Tensor, Tensor]:
        out, weights = self.attn(x, x, x, need_weights=True,
                                 average_attn_weights=False)
        return out.mean(dim=1), weights

    def __repr__(self) -> str:
        return (f'{self.__class__.__name__}({self.attn.embed_dim}, '
                f'heads={self.attn.num_heads})')
