"""settings.py: each setting declared once; the flags, checks, JSON type checks and -resume rules derived from it."""
import argparse
import ast

import pytest

import settings
import train
from conftest import REPO
from datasets import DataError

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
        settings.check(settings.settled({'cutout': 99, 'input_size': 99, 'synthetic': True}))


def test_every_flag_is_documented():
    """docs/training.md's table (and docs/scaling.md for the cluster's) names every flag of the table."""
    docs = (REPO / 'docs' / 'training.md').read_text() + (REPO / 'docs' / 'scaling.md').read_text()
    assert [s.flag for s in settings.SETTINGS if s.flags != () and f'`{s.flag}' not in docs] == []
