"""embedding.py: nearest neighbours against brute force, and the gallery's cache."""
import os
import shutil
from pathlib import Path

import numpy as np
import pytest

import checkpoints
import datasets
import embedding
from errors import DataError
import helpers
from helpers import CHECKPOINT_META, make_run


def test_nearest_matches_brute_force_in_numpy():
    rng = np.random.default_rng(0)
    gallery, queries = rng.normal(0, 1, (300, 20)).astype(np.float32), rng.normal(0, 1, (7, 20)).astype(np.float32)
    queries[3] = gallery[42]                                            # a query that is in the gallery
    found, dist = embedding.nearest(queries, gallery, k=6, chunk=3)
    brute = np.sqrt(((queries[:, None, :].astype(np.float64) - gallery[None]) ** 2).sum(-1))
    assert (found == np.argsort(brute, axis=1, kind='stable')[:, :6]).all()
    np.testing.assert_allclose(dist, np.sort(brute, axis=1)[:, :6], rtol=1e-6, atol=1e-4)
    assert found[3, 0] == 42 and dist[3, 0] < 1e-3


@pytest.mark.slow
def test_the_gallery_is_computed_once_and_read_from_the_cache(tmp_path, monkeypatch):
    tree, run_dir = make_run(tmp_path)
    prefix, meta = checkpoints.for_use(str(run_dir))
    files = [str(f) for f in sorted(tree.glob('test/class*/*.png'))[:6]]
    split = datasets.Split(labels=np.zeros(len(files), np.int64), files=files)
    vectors, rows = embedding.gallery_vectors(prefix, meta, split, 'six files', tmp_path / 'cache')
    assert vectors.shape == (6, 4096) and list(rows) == list(range(6))
    cached = list((tmp_path / 'cache').glob('gallery-*.npz'))
    assert len(cached) == 1
    monkeypatch.setattr(embedding, 'Extractor', None)                  # read back: no network built
    again, _ = embedding.gallery_vectors(prefix, meta, split, 'six files', tmp_path / 'cache')
    np.testing.assert_array_equal(again, vectors)


# ---------------------------------------------------------------- the cache, without a network

WIDTH = helpers.FEATURE_WIDTH     # fc7
META = dict(CHECKPOINT_META)
STAMP = 1_600_000_000_000_000_000      # a file time in ns, set by hand: no test reads the clock


class FakeExtractor(helpers.FakeExtractor):
    """Each file's vector is its bytes' sum; a file holding b'bad' is unreadable."""
    readable = staticmethod(lambda contents: contents != b'bad')
    value = staticmethod(sum)


@pytest.fixture
def made(monkeypatch):
    """The splits the (fake) extractor computed vectors of."""
    monkeypatch.setattr(FakeExtractor, 'made', [])
    monkeypatch.setattr(embedding, 'Extractor', FakeExtractor)
    return FakeExtractor.made


def fake_checkpoint(folder):
    folder.mkdir(parents=True)
    for suffix in ('.index', '.data-00000-of-00001'):
        (folder / f'model.ckpt-1{suffix}').write_bytes(b'weights')
        os.utime(folder / f'model.ckpt-1{suffix}', ns=(STAMP, STAMP))
    return str(folder / 'model.ckpt-1')


def write(path, content, stamp=STAMP):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(content)
    os.utime(path, ns=(stamp, stamp))


def gallery_in(folder, contents=(b'img0', b'img1', b'img2', b'img3')):
    for i, content in enumerate(contents):
        write(folder / f'{i:02d}.png', content)
    files = [str(folder / f'{i:02d}.png') for i in range(len(contents))]
    return datasets.Split(labels=np.zeros(len(files), np.int64), files=files)


def vectors_of(prefix, split, cache, meta=META):
    return embedding.gallery_vectors(prefix, meta, split, f'folder {os.path.dirname(split.files[0])}', str(cache))


def test_the_gallery_cache_is_keyed_on_the_images_the_data_folder_and_the_checkpoint(tmp_path, made):
    prefix, cache = fake_checkpoint(tmp_path / 'run'), tmp_path / 'cache'
    split = gallery_in(tmp_path / 'data' / 'g')
    first, _ = vectors_of(prefix, split, cache)
    np.testing.assert_array_equal(vectors_of(prefix, split, cache)[0], first)
    assert len(made) == 1                                               # the second call read the cache
    write(tmp_path / 'data' / 'g' / '03.png', b'IMG3', stamp=STAMP + 10**9)     # another picture, same name and size
    (cache / 'gallery-0123456789abcdef.npz').write_bytes(b'the first format')
    (cache / 'notes.txt').write_text('a user\'s file')
    replaced, _ = vectors_of(prefix, split, cache)
    assert len(made) == 2 and replaced[3, 0] == sum(b'IMG3') != first[3, 0]
    assert len(list(cache.glob('gallery-*.npz'))) == 1                  # the older caches: removed
    assert (cache / 'notes.txt').exists()
    shutil.copytree(tmp_path / 'data', tmp_path / 'other_data')          # the same names, sizes and times elsewhere
    vectors_of(prefix, gallery_in(tmp_path / 'other_data' / 'g', (b'oth0', b'oth1', b'oth2', b'oth3')), cache)
    assert len(made) == 3
    os.utime(prefix + '.data-00000-of-00001', ns=(STAMP + 1, STAMP + 1))    # the checkpoint saved again
    vectors_of(prefix, split, cache)
    vectors_of(prefix, split, cache, dict(META, mean=[0.0, 0.0, 0.0]))      # other preprocessing
    assert len(made) == 5
    source = 'folder g'
    assert embedding.cache_key(prefix, META, split, source, 'fc7') != embedding.cache_key(prefix, META, split,
                                                                                          source, 'pool5')


def good_cache(path):
    np.savez(path, features=np.ones((4, WIDTH), np.float32), rows=np.arange(4))


def other_arrays(path):
    np.savez(path, vectors=np.ones((4, WIDTH), np.float32), rows=np.arange(4))


def wrong_width(path):
    np.savez(path, features=np.ones((4, 10), np.float32), rows=np.arange(4))


def too_many_rows(path):
    np.savez(path, features=np.ones((5, WIDTH), np.float32), rows=np.arange(5))


def rows_out_of_range(path):
    np.savez(path, features=np.ones((4, WIDTH), np.float32), rows=np.array([0, 1, 2, 9]))


def pickled(path):
    np.savez(path, features=np.array([{'a': 1}], object), rows=np.arange(1))


def npy(path):
    with open(path, 'wb') as f:
        np.save(f, np.ones((4, WIDTH), np.float32))


def cut(path):
    good_cache(path)
    data = Path(path).read_bytes()
    Path(path).write_bytes(data[:len(data) // 2])


@pytest.mark.parametrize('damage', [lambda p: Path(p).write_bytes(b''), lambda p: Path(p).write_bytes(b'not a zip'),
                                    cut, other_arrays, wrong_width, too_many_rows, rows_out_of_range, pickled, npy],
                             ids=['empty', 'not a zip', 'cut', 'other arrays', 'wrong width', 'too many rows',
                                  'rows out of range', 'pickled', 'npy'])
def test_an_unusable_cache_gets_one_warning_and_is_rebuilt(tmp_path, made, damage):
    prefix, cache = fake_checkpoint(tmp_path / 'run'), tmp_path / 'cache'
    split = gallery_in(tmp_path / 'g')
    good, _ = vectors_of(prefix, split, cache)
    [path] = cache.glob('gallery-*.npz')
    damage(str(path))
    with pytest.warns(UserWarning, match='not a usable gallery cache') as warned:
        again, rows = vectors_of(prefix, split, cache)
    assert len(warned) == 1 and '\n' not in str(warned[0].message) and str(path) in str(warned[0].message)
    assert len(made) == 2 and list(rows) == [0, 1, 2, 3]
    np.testing.assert_array_equal(again, good)
    with np.load(path, allow_pickle=False) as rebuilt:                  # written again, whole
        np.testing.assert_array_equal(rebuilt['features'], good)
    assert [p.name for p in cache.iterdir()] == [path.name]            # no temporary file left


def test_a_gallery_without_a_readable_image_is_refused_and_not_cached(tmp_path, made):
    prefix, cache = fake_checkpoint(tmp_path / 'run'), tmp_path / 'cache'
    with pytest.raises(DataError, match='none of the 2 gallery images could be read'):
        vectors_of(prefix, gallery_in(tmp_path / 'g', (b'bad', b'bad')), cache)
    assert not cache.exists() or not list(cache.iterdir())


def test_a_cache_folder_that_cannot_be_made_gets_one_warning_and_the_vectors(tmp_path, made):
    prefix, split = fake_checkpoint(tmp_path / 'run'), gallery_in(tmp_path / 'g')
    (tmp_path / 'notes.txt').write_text('a file, where the cache folder would be')
    with pytest.warns(UserWarning, match='cannot cache the gallery') as warned:
        vectors, rows = vectors_of(prefix, split, tmp_path / 'notes.txt' / 'cache')
    assert len(warned) == 1 and vectors.shape == (4, WIDTH) and list(rows) == [0, 1, 2, 3]
