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


@pytest.fixture(scope='module')
def tree(tmp_path_factory):
    """A class-folder dataset AlexNet learns in a few steps (helpers.make_learnable_tree), once a module."""
    from helpers import make_learnable_tree
    return make_learnable_tree(tmp_path_factory.mktemp('data'))


@pytest.fixture(scope='module')
def small_tree(tmp_path_factory):
    """The same kind of tree with a quarter of the images (32 to train: 2 steps an epoch at batch 16), for
    the tests whose checks hold whatever the epoch's length, so that their epochs cost a quarter."""
    from helpers import make_learnable_tree
    return make_learnable_tree(tmp_path_factory.mktemp('small_data'), train_per_class=8, val_per_class=4)
