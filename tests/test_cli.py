"""cli.py: the flags the evaluating commands share, their one-line errors and one-line warnings."""
import argparse
import warnings

import pytest

import cli
from datasets import DataError


def parser():
    p = cli.Parser(prog='x')
    cli.add_checkpoint_flags(p)
    cli.add_crop_flags(p)
    cli.add_top_k_flag(p)
    cli.add_devices_flag(p)
    return p


def test_crop_modes():
    p = parser()
    assert cli.crop_mode(p.parse_args([])) == ('random', 5, '5 random crops')
    assert cli.crop_mode(p.parse_args(['--crops', '1'])) == ('random', 1, '1 random crop')
    assert cli.crop_mode(p.parse_args(['--ten-crop'])) == ('ten', 10, '10 crops')
    assert cli.crop_mode(p.parse_args(['--center'])) == ('center', 1, 'centre crop')
    with pytest.raises(DataError, match='--crops must be at least 1'):
        cli.crop_mode(p.parse_args(['--crops', '0']))
    assert p.parse_args(['-k', '3']).top_k == 3 and p.parse_args(['--verbose']).verbose


def test_flag_errors_are_one_line(capsys):
    with pytest.raises(SystemExit) as e:
        parser().parse_args(['--ten-crop', '--center'])
    err = capsys.readouterr().err
    assert e.value.code == 2 and err.startswith('error: ') and err.count('\n') == 1 and 'usage' not in err


def test_devices_and_warnings(capsys):
    assert cli.devices('/cpu:0') == ('/cpu:0', '/cpu:0')
    with pytest.raises(DataError, match='bad device string'):
        cli.devices('gpu0')
    assert cli.fail('no such thing') == 2 and capsys.readouterr().err == 'error: no such thing\n'
    with warnings.catch_warnings():
        cli.one_line_warnings()
        assert warnings.formatwarning('a partial folder', UserWarning, 'f.py', 1) == 'warning: a partial folder\n'
        with warnings.catch_warnings(record=True) as caught:     # recorders still record
            warnings.warn('kept')
        assert [str(w.message) for w in caught] == ['kept']
    assert isinstance(cli.Parser(), argparse.ArgumentParser)
