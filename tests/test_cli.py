"""cli.py: the flags the evaluating commands share, their one-line errors and one-line warnings."""
import argparse
import os
import warnings

import pytest

import cli
import files
from errors import DataError


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
        cli.crop_mode(argparse.Namespace(ten_crop=False, center=False, crops=0))
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


def test_numbers_out_of_range_are_refused_at_parse_time(capsys):
    p = cli.Parser(prog='x')
    p.add_argument('--n', type=cli.whole(1, 10))
    p.add_argument('--s', type=cli.number(0, 60, low_included=False))
    assert p.parse_args(['--n', '10', '--s', '0.5']).n == 10
    for argv, said in ((['--n', '0'], 'argument --n: must be at least 1, got 0'),
                       (['--n', '11'], 'must be at most 10, got 11'), (['--n', 'nan'], "'nan' is not a whole number"),
                       (['--s', '0'], 'must be a number above 0 up to 60, got 0'), (['--s', 'nan'], 'got nan'),
                       (['--s', '1e30'], 'got 1e30')):
        with pytest.raises(SystemExit):
            p.parse_args(argv)
        err = capsys.readouterr().err
        assert err.startswith('error: ') and said in err and err.count('\n') == 1, err


def test_an_output_replaces_only_a_file_of_its_kind_that_is_no_input(tmp_path):
    (tmp_path / 'old.json').write_text('{"top1": 0.5}')
    (tmp_path / 'photo.json').write_bytes(b'\x89PNG\r\n\x1a\n' + bytes(100))
    files.check_replaceable(str(tmp_path / 'old.json'), '--json', ('json',))
    files.check_replaceable(str(tmp_path / 'new.json'), '--json', ('json',))
    with pytest.raises(DataError, match='photo.json exists and is a PNG image, not JSON'):
        files.check_replaceable(str(tmp_path / 'photo.json'), '--json', ('json',))
    with pytest.raises(DataError, match='is one of the files to read'):
        files.check_replaceable(str(tmp_path / 'old.json'), '--json', ('json',), [str(tmp_path / 'old.json')])
    os.mkfifo(tmp_path / 'fifo.json')
    with pytest.raises(DataError, match='is not a regular file'):
        files.check_replaceable(str(tmp_path / 'fifo.json'), '--json', ('json',))
