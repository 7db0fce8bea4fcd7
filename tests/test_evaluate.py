"""evaluate.py: top-k counts with ties."""
import numpy as np

import evaluate


def test_top_k_hits_count_ties_by_the_lower_index():
    probs = np.array([[0.5, 0.2, 0.2, 0.1], [0.1, 0.1, 0.1, 0.7], [0.25, 0.25, 0.25, 0.25]])
    labels = [1, 3, 2]
    assert evaluate.top_k_hits(probs, labels, 1).tolist() == [False, True, False]
    assert evaluate.top_k_hits(probs, labels, 2).tolist() == [True, True, False]     # 1 beats 2 on the tie
    assert evaluate.top_k_hits(probs, labels, 3).tolist() == [True, True, True]
    assert evaluate.top_k_hits(probs, labels, 10).all()                               # k above the classes


