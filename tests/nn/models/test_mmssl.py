import math

import pytest
import torch

from pyg_mmssl.nn.adjacency import available_backends
from pyg_mmssl.nn.attention import ModalityAttention
from pyg_mmssl.nn.discriminator import CRITICS, Discriminator
from pyg_mmssl.nn.models import MMSSL
from pyg_mmssl.ranking import csr_rows
from pyg_mmssl.train import TrainConfig, Trainer

SMALL = dict(embedding_dim=16, heads=4, topk_rate=0.1, g_rate=0.01,
             cl_rate=0.1)


def batch():
    return (torch.tensor([0, 1, 2, 3, 1, 5]), torch.tensor([2, 3, 4, 5, 6, 7]),
            torch.tensor([8, 9, 10, 11, 12, 13]))


def step(model, d_opt=None, opt=None, index=0):
    r"""Training step ``index`` as the trainer takes it (see
    ``Recommender``'s docstring); returns the loss terms, the critic's
    ``"d"`` included, and the critic's gradients."""
    grads = {}
    device = next(model.parameters()).device
    user, pos, neg = (t.to(device) for t in batch())
    out = model()
    terms = {}
    if d_opt is not None:
        d_loss = model.critic_loss(user, out)
        d_opt.zero_grad()
        d_loss.backward()
        grads.update({n: p.grad.clone() for n, p in
                      model.discriminator.named_parameters()})
        d_opt.step()
        terms['d'] = d_loss.detach()
    terms.update(model.loss(user, pos, neg, out))
    every = model.schedule().refresh_every
    if every and index % every == 0:
        model.refresh_graphs(out)
    if opt is not None:
        opt.zero_grad()
    terms['loss'].backward()
    if opt is not None:
        opt.step()
    return terms, grads


def optimisers(model):
    critic = model.discriminator_parameters()
    return (torch.optim.Adam(critic, 1e-3) if critic else None,
            torch.optim.Adam(model.recommender_parameters(), 1e-2))


@pytest.mark.parametrize('critic', CRITICS)
def test_every_parameter_gets_a_gradient(tiny_data, critic, device,
                                        assert_critic_gradient):
    model = MMSSL.from_data(tiny_data, **SMALL, critic=critic).to(device)
    d_opt, _ = optimisers(model)
    _, d_grads = step(model, d_opt)
    critic = set(id(p) for p in model.discriminator_parameters())
    for name, p in model.named_parameters():
        if id(p) in critic:
            continue
        assert p.grad is not None and p.grad.abs().sum() > 0, name
    names = [n for n, _ in model.discriminator.named_parameters()]
    assert names and set(names) == set(d_grads)
    for name, g in d_grads.items():
        assert_critic_gradient(model.discriminator, name, g)


def test_loss_terms_change_over_steps(tiny_data):
    model = MMSSL.from_data(tiny_data, **SMALL)
    d_opt, opt = optimisers(model)
    history = [step(model, d_opt, opt, i)[0] for i in range(4)]
    for key in ('loss', 'bpr', 'reg', 'feat_reg', 'cl', 'adv', 'd'):
        values = [float(h[key].detach()) for h in history]
        assert len(set(values)) == len(values), (key, values)
    # The contrastive loss is not the constant ln(2B - 1) of empty graphs.
    n = torch.unique(batch()[0]).numel()
    assert all(abs(float(h['cl'].detach()) / 2 - math.log(2 * n - 1)) > 1e-3
               for h in history)


def test_attention_depends_on_input():
    torch.manual_seed(0)
    attn = ModalityAttention(16, heads=4)
    x = torch.randn(5, 3, 16)
    out, w = attn(x)
    assert out.shape == (5, 16) and w.shape == (5, 4, 3, 3)
    assert not torch.allclose(w, torch.full_like(w, 1 / 3), atol=1e-3)
    y = x.clone()
    y[:, 1] += torch.randn(5, 16)
    _, w2 = attn(y)
    assert (w2 - w).abs().max() > 1e-3
    assert torch.allclose(w.sum(-1), torch.ones(5, 4, 3), atol=1e-5)
    with pytest.raises(ValueError, match="not divisible"):
        ModalityAttention(10, heads=4)


@pytest.mark.parametrize('num_modalities', [1, 2, 3])
def test_attention_equals_torch_multihead_attention(num_modalities):
    torch.manual_seed(0)
    attn = ModalityAttention(16, heads=4).double()
    x = torch.randn(7, num_modalities, 16, dtype=torch.double,
                    requires_grad=True)
    out, w = attn(x)
    ref, ref_w = attn.attn(x, x, x, need_weights=True,
                           average_attn_weights=False)
    assert torch.allclose(w, ref_w, atol=1e-12)
    assert torch.allclose(out, ref.mean(dim=1), atol=1e-12)
    grad = torch.randn_like(out)
    params = [x] + list(attn.parameters())
    got = torch.autograd.grad((out * grad).sum(), params)
    want = torch.autograd.grad((ref.mean(dim=1) * grad).sum(), params)
    for g, r in zip(got, want):
        assert torch.allclose(g, r, atol=1e-12)


@pytest.mark.parametrize('num_modalities', [1, 2, 3])
@pytest.mark.parametrize('bias', [True, False])
def test_attention_of_identical_modalities(num_modalities, bias):
    torch.manual_seed(0)
    attn = ModalityAttention(16, heads=4, bias=bias).double()
    if not bias:  # no bias anywhere: a linear map of its input
        assert all('bias' not in name or p is None
                   for name, p in attn.named_parameters())
        assert torch.allclose(attn.forward_identical(
            torch.zeros(3, 16, dtype=torch.double), num_modalities)[0],
            torch.zeros(3, 16, dtype=torch.double))
    h = torch.randn(7, 16, dtype=torch.double, requires_grad=True)
    out, w = attn.forward_identical(h, num_modalities)
    ref, ref_w = attn(h.unsqueeze(1).expand(-1, num_modalities, -1))
    assert w.shape == ref_w.shape == (7, 4, num_modalities, num_modalities)
    assert torch.allclose(w, ref_w, atol=1e-12)
    assert torch.allclose(out, ref, atol=1e-12)
    grad = torch.randn_like(out)
    params = [h] + list(attn.parameters())
    got = torch.autograd.grad((out * grad).sum(), params, allow_unused=True)
    want = torch.autograd.grad((ref * grad).sum(), params)
    for g, r in zip(got, want):
        # Query and key projections: zero gradient either way.
        assert torch.allclose(torch.zeros_like(r) if g is None else g, r,
                              atol=1e-12)


@pytest.mark.parametrize('attention,attention_bias', [
    (True, True), (True, False), (False, True)])
def test_without_structure_learning_one_branch_serves_all_modalities(
        tiny_data, attention, attention_bias):
    # Before its first refresh, the 'replace' graph of every modality is the
    # observed graph: the general path computes what the shared path does.
    torch.manual_seed(0)
    shared = MMSSL.from_data(tiny_data, **SMALL, adversarial=False,
                             attention=attention,
                             attention_bias=attention_bias).double()
    general = MMSSL.from_data(tiny_data, **SMALL, adversarial=True,
                              attention=attention,
                              attention_bias=attention_bias).double()
    general.load_state_dict(shared.state_dict(), strict=False)
    shared.eval(), general.eval()  # no dropout: the same draws either way
    a, b = shared(), general()
    assert a.user_id_modal['image'] is a.user_id_modal['text']
    for x, y in [(a.user, b.user), (a.item, b.item)] + [
            (a.user_id_modal[m], b.user_id_modal[m]) for m in a.user_id_modal
    ] + [(a.item_id_modal[m], b.item_id_modal[m]) for m in a.item_id_modal]:
        assert torch.allclose(x, y, atol=1e-12)
    if attention:
        assert torch.allclose(a.attention, b.attention, atol=1e-12)
    terms_a = shared.loss(*batch(), a)
    terms_b = general.loss(*batch(), b)
    for key in ('bpr', 'reg', 'feat_reg', 'cl'):
        assert torch.allclose(terms_a[key], terms_b[key], atol=1e-12), key
    assert float(terms_a['cl'].detach()) > 0
    loss_a = terms_a['loss']
    loss_b = terms_b['loss'] - general.g_rate * terms_b['adv']
    loss_a.backward()
    loss_b.backward()
    params_b = dict(general.named_parameters())
    for name, p in shared.named_parameters():
        assert torch.allclose(p.grad, params_b[name].grad, atol=1e-10), name


def test_attention_in_model_depends_on_modalities(tiny_data):
    model = MMSSL.from_data(tiny_data, **SMALL).eval()
    att = model().attention
    model.feat_0.add_(torch.randn_like(model.feat_0))
    # Features enter attention through the learned graphs after a refresh.
    with torch.no_grad():
        out = model()
    model.refresh_graphs(out)
    assert (model().attention - att).abs().max() > 1e-4


def test_refresh_gives_k_edges_per_user_and_never_empty(tiny_data, device):
    model = MMSSL.from_data(tiny_data, **SMALL).to(device)
    d_opt, opt = optimisers(model)
    for i in range(3):
        step(model, d_opt, opt, i)
    train = model.train_edge_index
    for m in model.modalities:
        ei = model.learned_edge_index(m)
        assert ei.size(1) > 0
        deg = torch.bincount(ei[0], minlength=model.num_users)
        assert (deg == model.k).all()
        learned = set((ei[0] * model.num_items + ei[1]).tolist())
        observed = set((train[0] * model.num_items + train[1]).tolist())
        assert not learned & observed  # training items are masked
    data = model.write_learned_graphs(tiny_data.clone())
    assert torch.equal(data['user', 'image', 'item'].edge_index,
                       model.learned_edge_index('image').cpu())


def test_refresh_every_t_steps(tiny_data):
    model = MMSSL.from_data(tiny_data, **{**SMALL, 'refresh_every': 3})
    d_opt, opt = optimisers(model)
    seen = []
    for i in range(4):
        step(model, d_opt, opt, i)
        seen.append(model.learned_edge_index('image').clone())
    assert seen[0].shape == seen[1].shape and torch.equal(seen[1], seen[2])
    assert not torch.equal(seen[2], seen[3])  # refreshed at step 3


def test_critic_is_nonlinear():
    torch.manual_seed(0)
    d = Discriminator(40).eval()
    slopes = [m.negative_slope for m in d.modules()
              if isinstance(m, torch.nn.LeakyReLU)]
    assert slopes and all(s == 0.2 for s in slopes)
    x, y = torch.randn(8, 40), torch.randn(8, 40)
    additivity = d(x + y) - d(x) - d(y) + d(torch.zeros(8, 40))
    assert additivity.abs().max() > 1e-3
    with pytest.raises(ValueError, match="linear"):
        Discriminator(40, negative_slope=1)
    with pytest.raises(ValueError, match="unknown critic"):
        Discriminator(40, critic='huge')


def test_lowrank_critic_shapes():
    d = Discriminator(40, critic='lowrank', rank=4)
    assert d(torch.randn(6, 40)).shape == (6, )
    assert d.input.weight.shape == (4, 40)


@pytest.mark.parametrize('gumbel,tau_real', [(True, 0.002), (True, 0.5),
                                             (False, 0.002)])
def test_real_rows_are_the_real_distribution(tiny_data, gumbel, tau_real):
    # gumbel_eps=0 makes both deterministic; tau_real 0.5 takes the dense
    # branch of real_rows.
    model = MMSSL.from_data(tiny_data, **SMALL, gumbel=gumbel,
                            tau_real=tau_real, gumbel_eps=0.)
    users = torch.tensor([0, 2, 3, 7])
    row, col = csr_rows(model.train_csr(), users)
    with torch.no_grad():
        out = model()
    rows = model.real_rows(row, col, out.user[users], out.item)
    assert (rows.dense is None) == (tau_real < 0.1)
    mask = torch.zeros(4, model.num_items)
    mask[row, col] = 1
    expected = model.real_distribution(mask, out.user[users], out.item)
    assert torch.allclose(rows.to_dense(), expected, atol=1e-6)


def test_exact_critic_trains_like_dense(tiny_data, device):
    # Same seed, same random draws: dense and exact critics give the same
    # losses over steps (float32 tolerance); lowrank differs.
    terms = {}
    for critic in ('dense', 'exact'):
        torch.manual_seed(0)
        model = MMSSL.from_data(tiny_data, **SMALL, critic=critic,
                                gumbel=False).to(device)
        d_opt, opt = optimisers(model)
        terms[critic] = [step(model, d_opt, opt, i)[0] for i in range(3)]
    for a, b in zip(terms['dense'], terms['exact']):
        for key in ('loss', 'adv', 'd'):
            assert torch.allclose(a[key], b[key], rtol=1e-4, atol=1e-5), key


def test_stacked_layers_differ(tiny_data):
    outs = {}
    for layers in (1, 2):
        for mlayers in (1, 2):
            torch.manual_seed(0)
            model = MMSSL.from_data(tiny_data, num_layers=layers,
                                    modality_layers=mlayers, **SMALL).eval()
            outs[layers, mlayers] = model()
    assert not torch.allclose(outs[1, 1].user, outs[2, 1].user, atol=1e-4)
    assert not torch.allclose(outs[1, 1].user_modal['image'],
                              outs[1, 2].user_modal['image'], atol=1e-4)


@pytest.mark.parametrize('switch', ['adversarial', 'contrastive', 'gumbel',
                                    'attention'])
def test_ablations(tiny_data, switch):
    model = MMSSL.from_data(tiny_data, **{**SMALL, switch: False})
    d_opt, opt = optimisers(model)
    terms, _ = step(model, d_opt, opt)
    assert torch.isfinite(terms['loss'])
    if switch == 'adversarial':
        assert model.discriminator is None and float(terms['adv']) == 0
        assert torch.equal(model.learned_edge_index('image'),
                           model.train_edge_index)
    if switch == 'contrastive':
        assert float(terms['cl']) == 0
    if switch == 'attention':
        assert model().attention is None


def test_seeded_training_is_reproducible(tiny_data, tmp_path):
    results = []
    for run in range(2):
        torch.manual_seed(0)
        model = MMSSL.from_data(tiny_data, **SMALL)
        cfg = TrainConfig(epochs=2, batch_size=64, seed=3, device='cpu',
                          quiet=True)
        results.append(Trainer(model, tiny_data, cfg,
                               out=str(tmp_path / str(run))).fit())
    assert results[0]['val'] == results[1]['val']
    assert results[0]['test'] == results[1]['test']


def test_checkpoint_restores_learned_graphs(tiny_data, device):
    # Trained on ``device``, restored on CPU.
    model = MMSSL.from_data(tiny_data, **SMALL).to(device)
    d_opt, opt = optimisers(model)
    step(model, d_opt, opt)
    state = model.state_dict()
    fresh = MMSSL.from_data(tiny_data, **SMALL)
    assert fresh.learned_edge_index('text').shape != \
        model.learned_edge_index('text').shape
    fresh.load_state_dict(state)
    assert torch.equal(fresh.learned_edge_index('text'),
                       model.learned_edge_index('text').cpu())
    fresh.eval(), model.eval()
    assert torch.allclose(fresh.get_embedding().user,
                          model.get_embedding().user.cpu(), atol=1e-6)


def test_bad_arguments(tiny_data):
    with pytest.raises(ValueError, match="at least one modality"):
        MMSSL.from_data(tiny_data, modalities=[])
    with pytest.raises(ValueError, match="no feature 'audio'"):
        MMSSL.from_data(tiny_data, modalities=['audio'])


@pytest.mark.parametrize('backend', available_backends())
def test_copy_pickle_and_cast_after_graphs_are_cached(tiny_data, backend):
    import copy
    import io
    model = MMSSL.from_data(tiny_data, **SMALL, backend=backend).eval()
    emb = model.get_embedding()  # builds the cached (sparse CSR) graphs
    assert model._graph_cache
    buffer = io.BytesIO()
    torch.save(model, buffer)
    buffer.seek(0)
    for other in (copy.deepcopy(model),
                  torch.load(buffer, weights_only=False)):
        assert not other._graph_cache
        assert torch.equal(other.get_embedding().user, emb.user)
    # A cast rebuilds the cache in the new dtype.
    double = model.double().get_embedding()
    assert double.user.dtype == torch.float64
    assert torch.allclose(double.user.float(), emb.user, atol=1e-5)


@pytest.mark.parametrize('critic', CRITICS)
def test_loss_changes_no_state(tiny_data, critic):
    model = MMSSL.from_data(tiny_data, **SMALL, critic=critic)
    d_opt, opt = optimisers(model)
    step(model, d_opt, opt)  # learned graphs and critic statistics set
    user, pos, neg = batch()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    graphs = [model.learned_edge_index(m).clone() for m in model.modalities]
    out = model()
    terms = []
    for _ in range(2):
        torch.manual_seed(3)  # the same critic dropout masks
        terms.append(model.loss(user, pos, neg, out))
    for key in terms[0]:
        assert torch.equal(terms[0][key], terms[1][key]), key
    after = model.state_dict()
    assert before.keys() == after.keys()
    for key, value in before.items():
        assert torch.equal(value, after[key]), key
    for m, graph in zip(model.modalities, graphs):
        assert torch.equal(model.learned_edge_index(m), graph)
    # critic_loss moves the critic's batch-norm statistics alone, as any
    # training forward pass of a module with batch norm does.
    model.critic_loss(user, out)
    changed = {k for k, v in model.state_dict().items()
               if not torch.equal(v, before[k])}
    assert changed and all(k.startswith('discriminator.head.') and
                           ('running_' in k or 'num_batches' in k)
                           for k in changed), changed


def test_schedule_follows_the_options(tiny_data):
    from pyg_mmssl.nn.models.base import Schedule
    model = MMSSL.from_data(tiny_data, **{**SMALL, 'refresh_every': 5})
    assert model.schedule() == Schedule(critic_steps=1, refresh_every=5)
    plain = MMSSL.from_data(tiny_data, **{**SMALL, 'adversarial': False})
    assert plain.schedule() == Schedule()
    # Without the adversarial term the critic would shape nothing: no
    # critic, the learned graphs still refreshed.
    free = MMSSL.from_data(tiny_data, **{**SMALL, 'refresh_every': 5,
                                         'g_rate': 0.})
    assert free.schedule() == Schedule(critic_steps=0, refresh_every=5)
    assert free.discriminator is None and not free.discriminator_parameters()


def test_learned_graphs_without_a_critic_train_and_refresh(tiny_data):
    from pyg_mmssl.train import TrainConfig, Trainer
    torch.manual_seed(0)
    model = MMSSL.from_data(tiny_data, **{**SMALL, 'g_rate': 0.,
                                          'learned_graph': 'mix',
                                          'refresh_every': 2})
    before = model.learned_edge_index('image').clone()
    terms = model.loss(*batch())
    assert float(terms['adv']) == 0.
    Trainer(model, tiny_data, TrainConfig(epochs=1, batch_size=64,
                                          quiet=True)).fit(test=False)
    after = model.learned_edge_index('image')
    assert after.size(1) == model.k * model.num_users and not torch.equal(
        before, after)


# Options of the learned graphs ############################################

def dense(edge_index, num_users, num_items, weight=None):
    out = torch.zeros(num_users, num_items, dtype=torch.double)
    w = torch.ones(edge_index.size(1)) if weight is None else weight
    out.index_put_((edge_index[0], edge_index[1]), w.double(),
                   accumulate=True)
    return out


def sym(matrix):
    du, di = matrix.sum(1, keepdim=True), matrix.sum(0, keepdim=True)
    scale = du.rsqrt().nan_to_num(posinf=0) * di.rsqrt().nan_to_num(posinf=0)
    return matrix * scale


def modality_matrix(model, j):
    r"""The ``[U, I]`` matrix of modality ``j``'s graph, by propagating the
    identity through it."""
    eye = torch.eye(model.num_items)
    return model._propagate(eye, model.modality_graph(j).item_to_user)


def refreshed(tiny_data, **options):
    torch.manual_seed(0)
    model = MMSSL.from_data(tiny_data, **{**SMALL, **options})
    d_opt, opt = optimisers(model)
    step(model, d_opt, opt)  # step 0 refreshes
    return model


@pytest.mark.parametrize('mode', ['union', 'mix'])
def test_augmenting_graphs_start_as_the_observed_graph(tiny_data, mode):
    model = MMSSL.from_data(tiny_data, **SMALL, learned_graph=mode)
    observed = sym(dense(model.train_edge_index, model.num_users,
                         model.num_items))
    for j in range(len(model.modalities)):
        assert model.learned_edge_index(model.modalities[j]).size(1) == 0
        assert torch.allclose(modality_matrix(model, j).double(), observed,
                              atol=1e-6)


def test_union_graph_is_observed_plus_k_per_user(tiny_data):
    model = refreshed(tiny_data, learned_graph='union')
    U, I, train = model.num_users, model.num_items, model.train_edge_index
    for j, m in enumerate(model.modalities):
        learned = model.learned_edge_index(m)
        assert learned.size(1) == U * model.k
        union = dense(train, U, I) + dense(learned, U, I)
        assert union.max() == 1  # disjoint: no edge twice
        got = modality_matrix(model, j).double()
        assert int((got != 0).sum()) == train.size(1) + U * model.k
        assert torch.allclose(got, sym(union), atol=1e-6)


def test_mix_graph_weights(tiny_data):
    beta = 0.7
    model = refreshed(tiny_data, learned_graph='mix', graph_beta=beta)
    U, I = model.num_users, model.num_items
    observed = sym(dense(model.train_edge_index, U, I))
    for j, m in enumerate(model.modalities):
        learned = sym(dense(model.learned_edge_index(m), U, I))
        expected = beta * observed + (1 - beta) * learned
        assert torch.allclose(modality_matrix(model, j).double(), expected,
                              atol=1e-6)


def test_score_weights_are_a_softmax_with_mean_one(tiny_data):
    model = MMSSL.from_data(tiny_data, **SMALL, learned_weight='score')
    U, I = model.num_users, model.num_items
    out = model()
    model.refresh_graphs(out)
    for j, m in enumerate(model.modalities):
        edges = model.learned_edge_index(m)
        weight = getattr(model, f'learned_weight_{j}')
        per_user = torch.zeros(U).index_add_(0, edges[0], weight)
        assert torch.allclose(per_user, torch.full((U, ), float(model.k)),
                              atol=1e-4)
        scores = (out.user_modal[m][edges[0]] *
                  out.item_modal[m][edges[1]]).sum(-1)
        u = edges[0] == 0  # a higher score, a higher weight
        assert torch.equal(scores[u].argsort(), weight[u].argsort())
        expected = sym(dense(edges, U, I, weight))
        assert torch.allclose(modality_matrix(model, j).double(), expected,
                              atol=1e-6)
    # Weights survive a checkpoint.
    fresh = MMSSL.from_data(tiny_data, **SMALL, learned_weight='score')
    fresh.load_state_dict(model.state_dict())
    assert torch.equal(fresh.learned_weight_0, model.learned_weight_0)


def test_embedding_fusion_scale(tiny_data):
    model = MMSSL.from_data(tiny_data, **SMALL, fusion_scale='embedding')
    x, base = torch.randn(5, 16), torch.randn(5, 16)
    assert torch.allclose(model._fused(x, base).norm(dim=-1),
                          base.norm(dim=-1), atol=1e-6)
    unit = MMSSL.from_data(tiny_data, **SMALL)
    assert torch.allclose(unit._fused(x, base).norm(dim=-1),
                          torch.ones(5), atol=1e-6)


@pytest.mark.parametrize('options', [
    dict(learned_graph='union'), dict(learned_graph='mix'),
    dict(learned_weight='score'), dict(fusion_scale='embedding'),
    dict(learned_graph='union', learned_weight='score',
         fusion_scale='embedding'),
    dict(item_bias='popularity'),
])
def test_graph_options_train_every_parameter(tiny_data, options,
                                             assert_critic_gradient):
    model = refreshed(tiny_data, **options)
    d_opt, _ = optimisers(model)
    model.zero_grad()
    _, d_grads = step(model, d_opt, index=1)  # on the learned graphs
    critic = {id(p) for p in model.discriminator_parameters()}
    for name, p in model.named_parameters():
        if id(p) not in critic:
            assert p.grad is not None and p.grad.abs().sum() > 0, name
    for name, g in d_grads.items():
        assert_critic_gradient(model.discriminator, name, g)


def test_bad_graph_options(tiny_data):
    for options, message in ((dict(learned_graph='both'),
                              "unknown learned_graph 'both'"),
                             (dict(learned_weight='soft'),
                              "unknown learned_weight 'soft'"),
                             (dict(fusion_scale='x'),
                              "unknown fusion_scale 'x'"),
                             (dict(graph_beta=1.5),
                              r"graph_beta must be in \[0, 1\]")):
        with pytest.raises(ValueError, match=message):
            MMSSL.from_data(tiny_data, **options)


def test_propagated_modality_is_the_encoded_features_propagated(tiny_data):
    # A (X W + b) = (A X) W + (A 1) b: the cached form computes what
    # propagating the encoded features does, for any rows.
    torch.manual_seed(0)
    model = MMSSL.from_data(tiny_data, **SMALL, modality_layers=2,
                            dropout=0.0).double()
    graph = model.bipartite_graph()
    rows = torch.tensor([3, 0, 3, 7])
    for j, m in enumerate(model.modalities):
        p_i = model.encoders[j](getattr(model, f'feat_{j}'))
        for _ in range(2):
            p_u = model._propagate(p_i, graph.item_to_user)
            p_i = model._propagate(p_u, graph.user_to_item)
        for side, full in (('user', p_u), ('item', p_i)):
            assert torch.allclose(model.propagated_modality(m, side), full,
                                  atol=1e-12)
            assert torch.allclose(model.propagated_modality(m, side, rows),
                                  full[rows], atol=1e-12)


@pytest.mark.parametrize('dropout', [0.0, 0.3])
def test_rows_on_demand_equal_the_full_embeddings(tiny_data, dropout):
    torch.manual_seed(0)
    model = MMSSL.from_data(tiny_data, **SMALL, dropout=dropout,
                            adversarial=False).double()
    out = model()
    rows = torch.tensor([5, 1, 5, 0])
    full = {'user': out.user, 'item': out.item}
    for side in ('user', 'item'):
        emb, modal = out.at(side, rows)
        assert torch.allclose(emb, full[side][rows], atol=1e-12)
        for m in model.modalities:
            assert torch.allclose(
                modal[m], getattr(out, f'{side}_modal')[m][rows], atol=1e-12)
    # Without dropout the modality embeddings are computed on demand; with
    # it, once in the forward pass (one draw).
    assert (out._modal is None) == (dropout == 0)
    # The final embeddings are the collaborative mean plus the fused parts.
    cf = out._sum['user'] / (model.num_layers + 1)
    expected = cf + sum(
        model.lambda_f * torch.nn.functional.normalize(out.user_modal[m],
                                                       dim=-1)
        for m in model.modalities)
    assert torch.allclose(out.user, expected, atol=1e-12)


@pytest.mark.parametrize('dropout', [0.0, 0.3])
def test_loss_on_the_batch_rows_equals_the_loss_on_all_rows(tiny_data,
                                                            dropout):
    # The loss reads the batch's rows only; the same terms from the full
    # matrices, written out.
    from pyg_mmssl.nn.losses import info_nce, l2_reg
    torch.manual_seed(0)
    model = MMSSL.from_data(tiny_data, **SMALL, dropout=dropout,
                            adversarial=False, item_bias='zero').double()
    with torch.no_grad():
        model.item_bias.normal_()
    out = model()
    user, pos, neg = batch()
    terms = model.loss(user, pos, neg, out)

    def score(u, i):
        return (out.user[u] * out.item[i]).sum(-1) + model.item_bias[i]

    bpr = -torch.nn.functional.logsigmoid(score(user, pos) -
                                          score(user, neg)).mean()
    feat = sum(l2_reg(out.user_modal[m][user], out.item_modal[m][pos],
                      out.item_modal[m][neg]) for m in model.modalities)
    users = torch.unique(user)
    cl = len(model.modalities) * info_nce(
        out.user_id_modal['image'][users], out.user[users], model.tau)
    for key, value in (('bpr', bpr), ('feat_reg', feat), ('cl', cl)):
        assert torch.allclose(terms[key], value, atol=1e-12), key
    terms['loss'].backward()
    for name, p in model.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name
