import pytest

from pyg_mmssl.presets import PRESETS, build_model, preset, preset_names


def test_paper_presets_keep_the_released_values():
    # The released code's TikTok settings, written out here independently
    # of the constructor's defaults, which a tuned preset may move away from.
    model, train = preset('mmssl', 'tiktok-paper', strict=True)
    released = dict(num_layers=2, dropout=0.2, lambda_id=0.36, lambda_f=0.55,
                    reg=1e-5, cl_rate=0.03, g_rate=1.8e-3, tau_real=0.002,
                    topk_rate=0.01, refresh_every=1, adversarial=True,
                    contrastive=True, attention=True, learned_graph='replace',
                    learned_weight='binary', fusion_scale='unit')
    assert {k: getattr(model, k) for k in released} == released
    assert (train.lr, train.batch_size) == (5.4e-4, 1024)
    for name in ('baby-paper', 'sports-paper'):
        model, train = preset('mmssl', name, strict=True)
        assert (model.adversarial, model.learned_graph, model.lambda_f,
                model.topk_rate, train.lr) == (True, 'replace', 0.55, 1e-4,
                                               5.5e-4)


@pytest.mark.parametrize('model,name', sorted(PRESETS))
def test_every_preset_builds_its_model(model, name, tiny_data):
    config, _ = preset(model, name, strict=True)
    assert name in preset_names(model)
    built = build_model(model, config, tiny_data)
    assert sum(p.numel() for p in built.parameters()) > 0


def test_tuned_mmssl_presets_turn_structure_learning_off():
    # The second TikTok study's best trial: the observed graph in the
    # ID-modality branch (no critic), 3 layers and its loss weights; then
    # no attention, the popularity prior at 0.2 (TikTok's: the popularity
    # adjustment instead) and no dropout; TikTok's lambda_id 1.0, the
    # others' 0.36 as released, and the rest as released.
    for name in ('tiktok', 'default', 'baby', 'sports'):
        model, train = preset('mmssl', name, strict=True)
        assert (model.adversarial, model.num_layers, model.lambda_f,
                train.lr, train.batch_size) == (False, 3, 1.68e-2, 5.98e-4,
                                                 1024)
        assert (model.reg, model.cl_rate, model.tau) == (1.21e-5, 1.06e-2,
                                                         0.238)
        assert (model.contrastive, model.attention, model.lambda_id,
                model.dropout) == (True, False,
                                   1.0 if name == 'tiktok' else 0.36, 0.0)
        if name == 'tiktok':
            assert (model.item_bias, train.adjust_popularity) == ('none',
                                                                  True)
        else:
            assert (model.item_bias, model.item_bias_scale,
                    train.adjust_popularity) == ('popularity', 0.2, False)
    paper, paper_train = preset('mmssl', 'tiktok-paper', strict=True)
    tuned, _ = preset('mmssl', 'tiktok', strict=True)
    assert (tuned.g_rate, tuned.tau_real, tuned.topk_rate) == (
        paper.g_rate, paper.tau_real, paper.topk_rate)
    assert (paper.attention, paper.item_bias,
            paper_train.adjust_popularity) == (True, 'none', False)


def test_tuned_baseline_presets():
    model, train = preset('lightgcn', 'tiktok', strict=True)
    assert (model.num_layers, model.reg, train.lr, train.lr_decay) == (
        4, 1.66e-3, 8.33e-3, 0.966)
    assert (model.item_bias, train.adjust_popularity) == ('none', True)
    # Every model's TikTok preset ranks with the popularity adjustment.
    for name in ('mmgcn', 'freedom', 'bm3'):
        assert preset(name, 'tiktok', strict=True)[1].adjust_popularity
        assert not preset(name, 'default')[1].adjust_popularity
    model, train = preset('mmgcn', 'tiktok', strict=True)
    assert (model.num_layers, model.combine, model.reg, train.lr) == (
        2, 'concat', 1.56e-5, 1.06e-4)
    model, train = preset('bm3', 'tiktok', strict=True)
    assert (model.num_layers, model.target_dropout, model.norm_reg,
            train.lr) == (2, 0.259, 8.88e-2, 5.07e-3)
    # Other datasets keep MMRec's values.
    model, train = preset('bm3', 'baby')
    assert (model.num_layers, model.norm_reg, train.lr) == (1, 0.1, 1e-3)
    model, train = preset('freedom', 'tiktok', strict=True)
    assert (model.edge_dropout, model.feat_weight, train.lr) == (
        0.516, 0.0, 9.74e-4)
