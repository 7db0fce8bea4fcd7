"""settings.py: each setting declared once; the flags, checks, JSON type checks and -resume rules derived from it."""
import argparse
import ast

import pytest

import settings
import train
from conftest import REPO
from errors import DataError

DERIVED = {'devices', 'replicas', 'resize_size'}      # filled from others by settings.check


def test_the_parser_and_the_settled_run_take_every_default_from_the_table(tmp_path):
    args = train.parse_args(['-scratch', '--train-dir', str(tmp_path / 'run')])
    assert settings.given(args) == {'train_dir': str(tmp_path / 'run')}    # a flag not given is None
    a, meta = train.settle_args(args)
    assert meta is None
    for s in settings.SETTINGS:
        if s.name not in DERIVED | {'train_dir'}:
            assert getattr(a, s.name) == s.default, s.name
    assert settings.DEFAULTS == {s.name: s.default for s in settings.SETTINGS if s.recorded}
    assert not {'job_name', 'task_index', 'step_timeout'} & set(settings.DEFAULTS)      # the cluster's: not recorded


def test_help_shows_each_default_and_the_demo_overlay(capsys):
    with pytest.raises(SystemExit):
        train.parse_args(['--help'])
    shown = ' '.join(capsys.readouterr().out.split())
    assert '(default 128; --dataset demo: 32)' in shown and '(default 0.9)' in shown and '(default 600.0)' in shown
    assert set(settings.DEMO) <= set(settings.BY_NAME)
    demo, _ = train.settle_args(train.parse_args(['-scratch', '--dataset', 'demo', '--epochs', '2']))
    assert demo.batch_size == 32 and demo.epochs == 2          # the overlay, then what was given


def test_no_other_module_declares_defaults_of_its_own():
    """The copies a setting used to have (trainer.DEFAULTS, cluster.DEFAULTS, train.DEMO_DEFAULTS, the types
    of None defaults) are gone: one table."""
    for path in REPO.glob('*.py'):
        if path.name == 'settings.py':
            continue
        tree = ast.parse(path.read_text())
        names = {t.id for node in tree.body if isinstance(node, ast.Assign) for t in node.targets
                 if isinstance(t, ast.Name)}
        assert not {n for n in names if 'DEFAULTS' in n or n in ('NONE_DEFAULT_TYPES', 'FIXED_ON_RESUME')}, path.name
    parser = argparse.ArgumentParser()
    settings.add_flags(parser)
    assert all(action.default is None for action in parser._actions if action.dest != 'help')


@pytest.mark.parametrize('args,problem', [
    ({'lr': '0.1'}, '"lr" is "0.1", not a number'),
    ({'batch_size': 12.5}, '"batch_size" is 12.5, not a whole number'),
    ({'validate': 1}, '"validate" is 1, not true or false'),
    ({'mean': ['a', 1, 2]}, 'not a list of numbers'),
    ({'synthetic': 0}, 'not true or false'),
])
def test_a_recorded_setting_of_the_wrong_type_is_named(args, problem):
    assert problem in settings.recorded_problem(args)


def test_recorded_settings_of_the_right_type_and_unknown_keys_pass():
    assert settings.recorded_problem(dict(settings.DEFAULTS, lr=1, resize_size=256, scratch=True)) is None


def test_resume_refuses_fixed_settings_and_fp16_switches_only():
    recorded = dict(settings.DEFAULTS, batch_size=32, precision='bf16')
    assert 'cannot change on -resume' in settings.resume_problem({'batch_size': 64}, recorded)
    assert settings.resume_problem({'batch_size': 32, 'lr': 0.5, 'epochs': 9}, recorded) is None
    assert settings.resume_problem({'precision': 'fp32'}, recorded) is None
    assert 'to or from fp16' in settings.resume_problem({'precision': 'fp16'}, recorded)


def test_precision_auto_is_this_machines_fastest_on_the_runs_devices(tmp_path, monkeypatch):
    for has_bf16, on_cpu in ((True, 'bf16'), (False, 'fp32')):
        monkeypatch.setattr(settings.parallel, 'cpu_has_bf16', lambda: has_bf16)
        args = train.parse_args(['-scratch', '--train-dir', str(tmp_path / 'run'), '--precision', 'auto'])
        assert train.settle_args(args)[0].precision == on_cpu        # what the checkpoint records
        assert settings.resolve_auto({'precision': 'auto', 'devices': '/gpu:0,/gpu:1'})['precision'] == 'fp16'
        recorded = dict(settings.DEFAULTS, devices='/gpu:0,/gpu:1', precision='fp16')   # -resume: the run's devices
        assert settings.resolve_auto({'precision': 'auto'}, recorded)['precision'] == 'fp16'
        assert settings.resolve_auto({'precision': 'fp32'}, recorded)['precision'] == 'fp32'


def test_each_check_names_the_flag():
    a = settings.settled({'train_layers': 'fc9', 'synthetic': True})
    with pytest.raises(DataError, match='--train-layers fc9 is not a layer'):
        settings.check(a)
    with pytest.raises(DataError, match='--label-smoothing must be in'):
        settings.check(settings.settled({'label_smoothing': 1.0}))
    with pytest.raises(DataError, match='--max-steps must be at least 1'):
        settings.check(settings.settled({'max_steps': 0}))
    with pytest.raises(DataError, match=r'--cutout 99 must be smaller than the crop \(--input-size 99\)'):
        settings.check(settings.settled({'cutout': 99, 'input_size': 99}))


@pytest.mark.parametrize('flag', [{'whiten_conv1': True}, {'cutout': 8}])
def test_what_works_on_training_images_is_refused_with_synthetic_ones(flag):
    """--whiten-conv1 and --cutout would be recorded but never applied to random images."""
    with pytest.raises(DataError, match=f'^--{next(iter(flag)).replace("_", "-")} .*leave it out of a --synthetic run'):
        settings.check(settings.settled(dict(flag, synthetic=True)))
    settings.check(settings.settled(dict(flag, synthetic=True, cutout=0, whiten_conv1=False)))


def test_every_flag_is_documented():
    """docs/training.md's table (and docs/scaling.md for the cluster's) names every flag of the table."""
    docs = (REPO / 'docs' / 'training.md').read_text() + (REPO / 'docs' / 'scaling.md').read_text()
    assert [s.flag for s in settings.SETTINGS if s.flags != () and f'`{s.flag}' not in docs] == []


def flag_table():
    """docs/training.md's flag table, rendered from train.py's parser (whose flags, defaults and help come from
    settings.py): one row a flag, its help as --help shows it."""
    rows = ['| flag | what it sets (default) |', '|---|---|']
    for action in train.parser()._actions:
        if action.option_strings and action.dest != 'help':
            flags = ', '.join(f'`{f}`' for f in action.option_strings)
            rows.append(f'| {flags} | {" ".join(action.help.split()).replace("|", "/").replace("<", "&lt;")} |')
    return '\n'.join(rows)


def test_the_docs_flag_table_is_the_parsers():
    """Every row's flag, default and help as train.py --help gives them; a changed setting fails here and
    prints the table to paste into docs/training.md."""
    text = (REPO / 'docs' / 'training.md').read_text()
    start = text.index('| flag | what it sets (default) |')
    shown = text[start:text.index('\n\n', start)]
    assert shown == flag_table(), 'docs/training.md\'s flag table is out of date; the new one:\n' + flag_table()


def test_a_preset_is_its_flags_written_out_and_flags_given_win(tmp_path):
    run = ['--train-dir', str(tmp_path / 'run')]
    written_out = settings.preset_flags('cifar10-hour').split()
    by_preset, _ = train.settle_args(train.parse_args(['-scratch', '--preset', 'cifar10-hour', *run]))
    by_flags, _ = train.settle_args(train.parse_args(['-scratch', *written_out, *run]))
    assert vars(by_preset) == vars(by_flags)
    assert by_preset.time_budget == 3600 and by_preset.resize_size == 112 and by_preset.precision != 'auto'
    given_after, _ = train.settle_args(train.parse_args(['-scratch', '--preset', 'cifar10-hour', '--lr', '0.03', *run]))
    assert given_after.lr == 0.03 and given_after.label_smoothing == 0.1
    demo, _ = train.settle_args(train.parse_args(['-scratch', '--preset', 'demo', *run]))
    assert vars(demo) == vars(train.settle_args(train.parse_args(['-scratch', '--dataset', 'demo', *run]))[0])


def test_the_docs_show_the_preset_and_the_flags_it_stands_for():
    """The README trains the hour with the preset; the results page writes its flags out, as --help does."""
    readme = (REPO / 'README.md').read_text()
    results = ' '.join((REPO / 'docs' / 'results.md').read_text().replace('\\\n', ' ').split())
    assert '--preset cifar10-hour' in readme
    assert settings.preset_flags('cifar10-hour') in results


@pytest.mark.slow
def test_resume_of_a_preset_run_needs_no_flags(small_tree, tmp_path, capsys):
    run = str(tmp_path / 'run')
    assert train.main(['-scratch', '--preset', 'cifar10-hour', '--dataset', 'folder', '--data-dir', str(small_tree),
                       '--input-size', '67', '--resize-size', '76', '--batch-size', '16', '--max-steps', '1',
                       '--no-validate', '--train-dir', run]) == 0
    a, meta = train.settle_args(train.parse_args(['-resume', '--train-dir', run]))
    hour = settings.PRESETS['cifar10-hour']
    for key in set(hour) - {'dataset', 'input_size', 'resize_size', 'precision'}:
        assert getattr(a, key) == meta['args'][key] == hour[key], key
    assert a.precision == meta['args']['precision'] != 'auto'
    with pytest.raises(DataError, match='leave --preset cifar10-hour out'):
        train.settle_args(train.parse_args(['-resume', '--preset', 'cifar10-hour', '--train-dir', run]))
