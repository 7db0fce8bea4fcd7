"""quiet.py: TensorFlow's start-up lines stay out of the scripts' output; --verbose brings them back."""
import os
import subprocess
import sys

import pytest

from conftest import REPO

LOAD = 'import quiet, tensorflow as tf; print(tf.constant(2).numpy() + 1)'


def run(code, *args, **env):
    environment = {k: v for k, v in os.environ.items() if k not in ('TF_CPP_MIN_LOG_LEVEL', 'ALEXNET_VERBOSE')}
    return subprocess.run([sys.executable, '-c', code, *args], cwd=REPO, capture_output=True, text=True,
                          env=dict(environment, **env), timeout=300)


@pytest.fixture(scope='module')
def loaded_then_failed():
    """One child for both tests below (each child pays TensorFlow's start-up): TensorFlow loaded and used,
    then an error of the program's own on stderr and exit code 3."""
    return run(LOAD + '; import sys; print("real error", file=sys.stderr); raise SystemExit(3)')


@pytest.mark.slow
def test_tensorflow_loads_without_a_word_and_verbose_shows_its_lines(loaded_then_failed):
    quiet = loaded_then_failed             # stderr holds the program's own line and nothing of TensorFlow's
    assert quiet.returncode == 3 and quiet.stdout == '3\n' and quiet.stderr == 'real error\n'
    loud = run(LOAD, '--verbose')
    assert loud.returncode == 0 and loud.stdout == '3\n' and loud.stderr.strip()      # e.g. the oneDNN notice
    assert run(LOAD, ALEXNET_VERBOSE='1').stderr.strip()


@pytest.mark.slow
def test_errors_after_start_up_are_still_shown(loaded_then_failed):
    failed = loaded_then_failed
    assert failed.returncode == 3 and 'real error' in failed.stderr
