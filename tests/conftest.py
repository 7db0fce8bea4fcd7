"""Shared test set-up: quiet TensorFlow, the repo on sys.path, the committed test data, the real-data switch.

    python -m pytest tests                                   # all that needs nothing outside the repo
    python -m pytest tests -m "not slow"                     # the quick tier
    ALEXNET_TEST_DATA=../shared/data python -m pytest tests  # also the tests on the large real data
    python -m pytest tests --real-data ../shared/data        # the same

The large real data folder holds imagenet/ (devkit and Kaggle metadata, val/*.JPEG) and
cifar10/ (the CIFAR-10 images as JPEG archives), as described in the README's Tests section.
"""
import os
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
import quiet  # noqa: F401,E402  (before TensorFlow loads: its start-up lines, oneDNN on every CPU)
TEST_DATA = REPO / 'tests' / 'data'      # the few small real files the default suite needs, committed
REAL_DATA_ENV = 'ALEXNET_TEST_DATA'


def pytest_addoption(parser):
    parser.addoption('--real-data', metavar='DIR',
                     help=f'folder of the large real data (e.g. ../shared/data): runs the tests that need it '
                          f'(or set {REAL_DATA_ENV}=DIR)')


def pytest_configure(config):
    config.addinivalue_line('markers', 'slow: takes more than about a second on a 2-core machine: a TensorFlow graph run, a '
                                       'subprocess, a training run (deselect with -m "not slow" for the quick tier)')


@pytest.fixture(scope='session')
def real_data(request):
    """The large real data folder; the test is skipped, saying how to turn it on, when none is given."""
    where = request.config.getoption('--real-data') or os.environ.get(REAL_DATA_ENV)
    if not where:
        pytest.skip(f'needs the large real data: set {REAL_DATA_ENV}=DIR or pass --real-data DIR '
                    f'(e.g. ../shared/data)')
    path = Path(where).resolve()
    if not path.is_dir():
        pytest.fail(f'{REAL_DATA_ENV} / --real-data {where} is not a folder')
    return path
