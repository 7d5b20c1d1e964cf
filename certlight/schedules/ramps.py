"""Epsilon, kappa and beta as pure functions of the global step.

Being pure functions of the step is what makes resume exact: the step is in every checkpoint.
"""

from __future__ import annotations

from dataclasses import dataclass

from certlight.errors import CertlightError
from certlight.validate import number


def ramp_progress(step: int, start_step: int, ramp_steps: int) -> float:
    """0 before ``start_step``, rising linearly to 1 over ``ramp_steps`` steps, then 1."""
    if ramp_steps <= 0:
        return 0.0 if step < start_step else 1.0
    return min(max((step - start_step) / ramp_steps, 0.0), 1.0)


def linear_shape(progress: float) -> float:
    return progress


def smoothed_shape(progress: float, mid: float = 0.25, power: float = 4.0) -> float:
    """DeepMind's smoothed ramp (Gowal et al. 2019, as in CROWN-IBP's SmoothedScheduler).

    Polynomial ``t**power`` up to ``mid`` of the ramp, then linear with a matching slope, so
    epsilon grows slowly while the network first meets non-zero perturbations.
    """
    scale = 1.0 / (mid**power + (1.0 - mid) * power * mid ** (power - 1))
    if progress < mid:
        return scale * progress**power
    return min(scale * mid**power + power * scale * mid ** (power - 1) * (progress - mid), 1.0)


RAMP_SHAPES = {"linear": linear_shape, "smoothed": smoothed_shape}


@dataclass(frozen=True)
class ScheduleValues:
    eps: float
    kappa: float
    beta: float


@dataclass(frozen=True)
class TrainingSchedule:
    """Warm-up epochs at epsilon 0, then a ramp to ``eps_train``; kappa and beta move linearly
    over the same ramp (as in Zhang et al. 2020 and the paper)."""

    eps_train: float
    warmup_epochs: float = 0
    ramp_epochs: float = 0
    shape: str = "linear"
    kappa_start: float = 1.0
    kappa_end: float = 0.5
    beta_start: float = 1.0
    beta_end: float = 0.0

    def __post_init__(self):
        if self.shape not in RAMP_SHAPES:
            raise CertlightError(f"schedule.shape={self.shape!r} is unknown; allowed: {', '.join(RAMP_SHAPES)}")
        number(self.eps_train, "eps.train", minimum=0, maximum=1)
        for name in ("warmup_epochs", "ramp_epochs"):
            number(getattr(self, name), f"schedule.{name}", minimum=0)
        for name in ("kappa_start", "kappa_end", "beta_start", "beta_end"):
            number(getattr(self, name), f"schedule.{name}", minimum=0, maximum=1)

    def at(self, step: int, steps_per_epoch: int) -> ScheduleValues:
        progress = ramp_progress(
            step, round(self.warmup_epochs * steps_per_epoch), round(self.ramp_epochs * steps_per_epoch)
        )
        return ScheduleValues(
            eps=self.eps_train * RAMP_SHAPES[self.shape](progress),
            kappa=self.kappa_start + (self.kappa_end - self.kappa_start) * progress,
            beta=self.beta_start + (self.beta_end - self.beta_start) * progress,
        )
