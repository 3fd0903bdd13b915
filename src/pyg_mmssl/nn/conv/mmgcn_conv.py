from typing import Optional, Tuple, Union

from torch import Tensor
from torch.nn import Linear
from torch_geometric.typing import Adj, OptTensor

from pyg_mmssl.nn.conv.mmssl_conv import MMSSLConv


class MMGCNConv(MMSSLConv):
    r"""The modality-specific graph convolution of MMGCN from the
    `"MMGCN: Multi-modal Graph Convolution Network for Personalized
    Recommendation of Micro-video" <https://arxiv.org/abs/1908.07209>`_
    paper (ACM MM 2019): a linear transform followed by normalised
    neighbourhood aggregation,

    .. math::
        \mathbf{h}_i = \sum_{j \in \mathcal{N}(i)} \hat{a}_{ji} \,
        \mathbf{W} \mathbf{x}_j

    with :math:`\hat{a}_{ji}` from :func:`bipartite_norm` (``"mean"`` by
    default, as in the paper's mean aggregation). Propagation is
    :class:`MMSSLConv`'s, so every adjacency type it takes works here too.

    Args:
        in_channels (int): Input size.
        out_channels (int): Output size.
        normalize (str, optional): ``"mean"``, ``"sym"`` or ``"none"``.
            (default: :obj:`"mean"`)
        bias (bool, optional): Bias of the linear transform.
            (default: :obj:`False`)
        **kwargs (optional): Additional arguments of :class:`MMSSLConv`.

    Shapes:
        - **input:** node features :math:`(|\mathcal{V}|, F_{in})` or a
          bipartite pair, edge indices :math:`(2, |\mathcal{E}|)` (or a
          sparse adjacency), edge weights :math:`(|\mathcal{E}|)`
          *(optional)*
        - **output:** node features :math:`(|\mathcal{V}_t|, F_{out})`
    """
    def __init__(self, in_channels: int, out_channels: int,
                 normalize: str = 'mean', bias: bool = False, **kwargs):
        super().__init__(normalize=normalize, **kwargs)
        self.in_channels, self.out_channels = in_channels, out_channels
        self.lin = Linear(in_channels, out_channels, bias=bias)
        self.reset_parameters()

    def reset_parameters(self):
        super().reset_parameters()
        if hasattr(self, 'lin'):
            self.lin.reset_parameters()

    def forward(self, x: Union[Tensor, Tuple[Tensor, Optional[Tensor]]],
                edge_index: Adj, edge_weight: OptTensor = None,
                size: Optional[Tuple[int, int]] = None) -> Tensor:
        if isinstance(x, Tensor):
            x = (x, x)
        return super().forward((self.lin(x[0]), x[1]), edge_index,
                               edge_weight, size)

    def __repr__(self) -> str:
        return (f'{self.__class__.__name__}({self.in_channels}, '
                f'{self.out_channels}, normalize={self.normalize})')
