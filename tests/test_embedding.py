"""embedding.py: nearest neighbours against brute force, and the gallery's cache."""
import numpy as np
import pytest

import checkpoints
import datasets
import embedding
from helpers import make_run


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
def test_the_gallery_is_computed_once_and_read_from_the_cache(tmp_path):
    tree, run_dir = make_run(tmp_path)
    prefix, meta = checkpoints.for_use(str(run_dir))
    files = [str(f) for f in sorted(tree.glob('test/class*/*.png'))[:6]]
    split = datasets.Split(labels=np.zeros(len(files), np.int64), files=files)
    vectors, rows = embedding.gallery_vectors(prefix, meta, split, 'six files', tmp_path / 'cache')
    assert vectors.shape == (6, 4096) and list(rows) == list(range(6))
    cached = list((tmp_path / 'cache').glob('gallery-*.npz'))
    assert len(cached) == 1
    again, _ = embedding.gallery_vectors(prefix, meta, datasets.Split(labels=np.zeros(0), files=[]), 'six files',
                                         tmp_path / 'cache')                    # read back: the split is not used
    np.testing.assert_array_equal(again, vectors)
    assert embedding.cache_key(prefix, 'six files', 'fc7') != embedding.cache_key(prefix, 'five files', 'fc7')
