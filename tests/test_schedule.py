"""schedule.py: the learning rate's plateau, step and one-cycle rules, and their state on resume."""
import numpy as np
import pytest

from errors import DataError
from schedule import LearningRate


def test_schedule_rules():
    plateau = dict(base=0.01, kind='plateau', lr_steps='', patience=2, min_improvement=0.01, max_drops=1)
    s = LearningRate(**plateau)
    for epoch, top1 in enumerate([0.1, 0.2, 0.205, 0.2, 0.3, 0.3, 0.3], 1):
        s.end_epoch(epoch, top1)
    assert s.rate == pytest.approx(0.001) and s.drops == 1     # stalled twice, then max_drops holds
    restored = LearningRate(**plateau, state=s.state())
    assert restored.state() == s.state()
    s = LearningRate(**dict(plateau, kind='step', lr_steps='2,4'))
    rates = []
    for epoch in range(1, 6):
        s.end_epoch(epoch)
        rates.append(s.rate)
    np.testing.assert_allclose(rates, [0.01, 0.001, 0.001, 0.0001, 0.0001])


def test_onecycle_rises_then_falls_to_zero_step_by_step():
    onecycle = dict(base=0.1, kind='onecycle', lr_steps='', patience=2, min_improvement=0.01, max_drops=3,
                    epochs=5, warmup_epochs=1)
    s = LearningRate(**onecycle)
    assert s.per_step
    rates = [s.at_step(step, 10) for step in range(50)]       # 10 steps an epoch
    assert rates[0] == pytest.approx(0.01) and rates[9] == pytest.approx(0.1)    # linear warm-up
    assert max(rates) == pytest.approx(0.1) and rates[-1] == pytest.approx(0.1 / 40)
    assert all(a < b for a, b in zip(rates[:10], rates[1:10])) and all(a > b for a, b in zip(rates[10:], rates[11:]))
    s.end_epoch(3, 0.5)                                        # epoch ends change nothing
    assert s.rate == pytest.approx(rates[-1])
    with pytest.raises(DataError, match='--warmup-epochs'):
        LearningRate(**dict(onecycle, warmup_epochs=5))


def test_schedule_flag_errors_are_one_line():
    with pytest.raises(DataError, match='--lr-steps wants epochs'):
        LearningRate(kind='step', lr_steps='30,sixty')
    with pytest.raises(DataError, match='needs --lr-steps'):
        LearningRate(kind='step')


def test_a_warm_up_longer_than_the_run_says_where_it_may_come_from():
    """--dataset demo --epochs 2: the demo's 3 epochs of warm-up do not fit, and the line says who set them."""
    with pytest.raises(DataError, match=r'fewer than --epochs \(2\), got 3 \(--dataset demo and the presets set one\)'):
        LearningRate(kind='onecycle', epochs=2, warmup_epochs=3)
