import pytest

from certlight.errors import CertlightError
from certlight.schedules import TrainingSchedule, ramp_progress, smoothed_shape


def test_linear_schedule_values_at_chosen_steps():
    schedule = TrainingSchedule(eps_train=0.4, warmup_epochs=3, ramp_epochs=17, kappa_start=1.0, kappa_end=0.5)
    per_epoch = 600
    assert schedule.at(0, per_epoch).eps == 0.0
    assert schedule.at(3 * per_epoch - 1, per_epoch).eps == 0.0
    assert schedule.at(3 * per_epoch, per_epoch).eps == 0.0
    middle = schedule.at(3 * per_epoch + 17 * per_epoch // 2, per_epoch)
    assert middle.eps == pytest.approx(0.2)
    assert middle.kappa == pytest.approx(0.75)
    assert middle.beta == pytest.approx(0.5)
    end = schedule.at(20 * per_epoch, per_epoch)
    assert (end.eps, end.kappa, end.beta) == pytest.approx((0.4, 0.5, 0.0))
    assert schedule.at(99 * per_epoch, per_epoch).eps == pytest.approx(0.4)


def test_smoothed_ramp_is_continuous_monotone_and_reaches_one():
    values = [smoothed_shape(i / 1000) for i in range(1001)]
    assert values[0] == 0.0 and values[-1] == pytest.approx(1.0)
    assert all(b >= a for a, b in zip(values, values[1:]))
    assert max(b - a for a, b in zip(values, values[1:])) < 0.005
    assert smoothed_shape(0.1) < 0.1  # slower than linear at the start


def test_smoothed_schedule_reaches_the_same_end_point():
    schedule = TrainingSchedule(eps_train=0.3, warmup_epochs=1, ramp_epochs=4, shape="smoothed")
    assert schedule.at(500, 100).eps == pytest.approx(0.3)
    assert 0 < schedule.at(300, 100).eps < 0.3 * 0.5


def test_zero_length_ramp_jumps_at_the_end_of_warmup():
    assert ramp_progress(9, 10, 0) == 0.0
    assert ramp_progress(10, 10, 0) == 1.0


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"eps_train": -0.1}, "eps.train=-0.1"),
        ({"eps_train": 0.4, "shape": "cosine"}, "schedule.shape='cosine'"),
        ({"eps_train": 0.4, "kappa_end": 1.5}, "schedule.kappa_end=1.5"),
        ({"eps_train": 0.4, "warmup_epochs": -1}, "schedule.warmup_epochs=-1"),
    ],
)
def test_bad_schedule_values_are_named(kwargs, message):
    with pytest.raises(CertlightError, match=message):
        TrainingSchedule(**kwargs)
