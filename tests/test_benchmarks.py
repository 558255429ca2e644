"""gau_keras.benchmarks: equal-parameter sizing, the analytic parameter and
FLOP counts, and the JSON of a one-point speed run (tiny sizes)."""
import json

import gau_keras  # noqa: F401  (before tensorflow)
import pytest

from gau_keras import benchmarks as bm

TINY = dict(hidden=32, units=2, key_size=16, heads=4, vocab_size=100,
            chunk_size=16, max_position=64)


def test_equal_param_configs_match_within_half_a_percent():
    for hidden, units in ((768, 2), (768, 24), (128, 4)):
        cfgs = bm.equal_param_configs(hidden=hidden, units=units)
        target = bm.encoder_params('gau_alpha', cfgs['gau_alpha'])
        for model in bm.SPEED_MODELS:
            got = bm.encoder_params(model, cfgs[model])
            assert abs(got / float(target) - 1) < 0.005, (model, got, target)
    # the hand solution at base width: 2 GAUs (2·(768·3200 + 1536·768 +
    # 256)) = 1 roformer_v2 layer of 4·768² + 2·768·I  =>  I = 3200.5
    cfgs = bm.equal_param_configs(hidden=768, units=2)
    assert cfgs['roformer_v2']['intermediate_size'] in (3200, 3201)
    assert cfgs['flash_quad']['num_hidden_layers'] == 1
    assert cfgs['gau_alpha']['num_hidden_layers'] == 2


def test_analytic_params_equal_keras_count_params():
    """The formulas against the built models' own count (independent)."""
    cfgs = bm.equal_param_configs(**TINY)
    for model in ('gau_alpha', 'flash_quad', 'flash', 'roformer_v2', 'bert',
                  'stock_gau'):
        keras_model = bm.build_bench_model(model, cfgs[model])
        total, encoder = bm.counted_params(keras_model)
        assert total == bm.total_params(model, cfgs[model]), model
        assert encoder == bm.encoder_params(model, cfgs[model]), model


def test_flops_against_a_hand_count():
    # one GAU, n=4, H=2, e=3, s=1: i_dense 2·4·2·7 = 112, o_dense
    # 2·4·3·2 = 48, QKᵀ 2·16·1 = 32, AV 2·16·3 = 96  => 288
    assert bm.gau_unit_flops(4, 2, 3, 1) == 288
    # one Transformer layer, n=4, H=2, I=3: QKVO 4·(2·4·2·2) = 128,
    # FFN 2·(2·4·2·3) = 96, QKᵀ + AV 2·(2·16·2) = 128  => 352
    assert bm.transformer_layer_flops(4, 2, 3) == 352
    # FLASH, n=5 padded to 2 chunks of c=4 (m=8): dense on 8 rows 224 + 96,
    # local 2·2·16·4 = 256, global KᵀV + Q(KᵀV) 2·(2·8·1·3) = 96  => 672
    assert bm.flash_unit_flops(5, 2, 3, 1, 4) == 672
    cfg = dict(hidden_size=2, intermediate_size=3, attention_key_size=1,
               num_hidden_layers=2, chunk_size=4)
    assert bm.forward_flops('gau_alpha', cfg, 4, batch=3) == 3 * 2 * 288
    assert bm.forward_flops('flash_quad', cfg, 4) == 4 * 288
    assert bm.forward_flops('flash', cfg, 5) == 4 * 672
    assert bm.train_flops('roformer_v2', cfg, 4) == 3 * 2 * 352
    # linear in n for FLASH at whole chunks, quadratic for the quad models
    big = dict(cfg, chunk_size=64)
    assert bm.forward_flops('flash', big, 4096) == pytest.approx(
        2 * bm.forward_flops('flash', big, 2048))
    assert bm.forward_flops('gau_alpha', cfg, 4096) > 2.5 * \
        bm.forward_flops('gau_alpha', cfg, 2048)


def test_bad_sizes_are_named():
    with pytest.raises(ValueError, match='units'):
        bm.equal_param_configs(units=3)
    with pytest.raises(ValueError, match='roformer_v2'):
        bm.matched_intermediate('roformer_v2', 10, 768, 1)
    with pytest.raises(ValueError, match='unknown'):
        bm.forward_flops('gpt', {}, 4)


def test_one_point_speed_run_json(tmp_path):
    """A 1-point run through the subprocess worker: the report's schema."""
    args = bm.add_args(__import__('argparse').ArgumentParser()).parse_args(
        ['speed', '--out', str(tmp_path), '--models', 'gau_alpha',
         '--precisions', 'fp32', '--lengths', '32', '--tokens', '64',
         '--hidden', '32', '--key_size', '16', '--heads', '4',
         '--steps', '2', '--matmul_shape', '64,64,64'])
    report = bm.run_speed(args, log=lambda *a: None)
    saved = json.loads((tmp_path / 'speed.json').read_text())
    for key in ('machine', 'settings', 'configs', 'params', 'matmul',
                'results', 'skipped', 'goals'):
        assert key in saved, key
    assert set(saved['machine']['flags']) >= {'avx2', 'avx512_bf16',
                                              'amx_bf16'}
    assert 'tensorflow' in ''.join(saved['machine']['versions'])
    (point,) = saved['results']
    assert point['status'] == 'ok', point.get('stderr')
    assert (point['model'], point['n'], point['batch']) == ('gau_alpha', 32,
                                                           2)
    assert len(point['train_s']) == 2 and point['train']['median'] > 0
    assert point['params_encoder'] == saved['params']['gau_alpha']['encoder']
    assert point['train_tokens_per_s'] == pytest.approx(
        64 / point['train']['median'])
    assert point['train_flops'] == 3 * bm.forward_flops(
        'gau_alpha', saved['configs']['gau_alpha'], 32, 2)
    assert point['train_flop_fraction'] == pytest.approx(
        point['train_flops'] / point['train']['median'] /
        point['matmul']['float32'])
    assert point['peak_train_mb'] >= point['rss_import_mb'] > 0
    assert '| gau_alpha |' in bm.speed_tables(report)
