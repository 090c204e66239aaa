"""Epsilon from the runs a ledger records, with opacus's accountants; never a sum of epsilons.

A run is ``(noise_multiplier, sample_rate, steps)``: ``steps`` compositions of the
Poisson-subsampled Gaussian mechanism with that noise multiplier and sampling rate.
Both levels of DESIGN.md guarantee 4 are runs:

- sample-level DP-SGD: one run per released round, ``(sigma, q = batch / n, steps)``
  (`participant/training/privacy.py`, which trains with them);
- client-level DP of the aggregate: one run per round, ``(z, participation rate, 1)``,
  where ``z`` is the aggregate's noise over the clipping bound of one update. Treating
  the selection as Poisson sampling at the participation rate assumes participants are
  selected at random; Accord selects every online participant, so this amplification
  is an assumption the audit states.

Accountants: ``rdp`` (default; Mironov 2017 with the conversion of Balle et al. 2020,
as opacus computes it), ``prv`` (Gopi et al. 2021, numerically tight), and ``gdp``
(Gaussian DP by the central limit theorem, Dong et al. 2019: mu-GDP composes as the
root of the sum of the squares, which this module computes for mixed runs). GDP is an
approximation that can understate epsilon for few steps or large sampling rates
(opacus warns the same); the audit marks it.

``rdp`` and ``prv`` come from `accord.participant.training.privacy.epsilon`, the function the
participant's trainer reports with, so the audit and the trainer agree by construction
on the same history.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

from accord.errors import UsageError

ACCOUNTANTS = ("rdp", "prv", "gdp")
"""Accountants `accord audit budget --accountant` accepts."""

DEFAULT_ACCOUNTANT = "rdp"

UNDERSTATES = frozenset({"gdp"})
"""Accountants whose epsilon is an approximation that may understate the true loss."""

Run = tuple[float, float, int]


def epsilon(runs: Sequence[Run], delta: float, accountant: str = DEFAULT_ACCOUNTANT) -> float:
    """Epsilon at ``delta`` of all ``runs`` composed (0.0 when no step was taken).

    Args:
        runs: ``(noise_multiplier, sample_rate, steps)`` runs, in any order.
        delta: the target delta, in (0, 1).
        accountant: ``rdp``, ``prv`` or ``gdp``.

    Returns:
        Epsilon; ``math.inf`` when a run has no noise.

    Raises:
        UsageError: an unknown accountant, a delta outside (0, 1), or a run out of range.
    """
    if accountant not in ACCOUNTANTS:
        raise UsageError(f"accountant {accountant!r}: one of {', '.join(ACCOUNTANTS)}")
    if not 0 < delta < 1:
        raise UsageError(f"delta = {delta}: must be in (0, 1)")
    taken: list[Run] = []
    for sigma, rate, steps in runs:
        if not (0 <= rate <= 1) or steps < 0 or sigma < 0:
            raise UsageError(f"run ({sigma}, {rate}, {steps}): out of range")
        if steps and rate:
            if sigma == 0:
                return math.inf
            taken.append((float(sigma), float(rate), int(steps)))
    if not taken:
        return 0.0
    if accountant == "gdp":
        with _quiet():  # exp overflows for a tiny noise multiplier: mu is inf, epsilon too
            return _gdp_epsilon(taken, delta)
    from accord.participant.training import privacy

    with _quiet():
        return privacy.epsilon(accountant, taken, delta)


def prv_falls_back(runs: Sequence[Run], delta: float) -> bool:
    """Whether PRV's numerics fail on ``runs``, so that ``epsilon(..., "prv")`` is RDP's bound.

    PRV discretises the privacy loss; where it is enormous (a noise multiplier far below
    1, such as client-level z = 0.01 with a handful of participants) it fails, and the
    RDP upper bound is reported instead.
    """
    from accord.participant.training import privacy

    with _quiet():
        return privacy.prv_falls_back(runs, delta)


def epsilon_over_rounds(
    rounds: Sequence[tuple[int, Run | None]], delta: float, accountant: str = DEFAULT_ACCOUNTANT
) -> list[tuple[int, float]]:
    """The cumulative epsilon after each round: ``[(round, epsilon of runs so far)]``.

    ``None`` marks a round released without DP: epsilon is infinite from there on.
    """
    curve: list[tuple[int, float]] = []
    so_far: list[Run] = []
    unbounded = False
    for number, run in rounds:
        if run is None:
            unbounded = True
        else:
            so_far.append(run)
        curve.append((number, math.inf if unbounded else epsilon(so_far, delta, accountant)))
    return curve


def _gdp_epsilon(runs: Sequence[Run], delta: float) -> float:
    from opacus.accountants.analysis import gdp

    mu_squared = 0.0
    for sigma, rate, steps in runs:
        mu = gdp.compute_mu_poisson(steps=steps, noise_multiplier=sigma, sample_rate=rate)
        mu_squared += float(mu) ** 2
    if not math.isfinite(mu_squared):
        return math.inf
    try:
        return float(gdp.eps_from_mu(mu=math.sqrt(mu_squared), delta=delta))
    except ValueError:  # no root below epsilon 500: as good as no privacy
        return math.inf


@contextmanager
def _quiet() -> Iterator[None]:
    with warnings.catch_warnings():
        # The RDP conversion picks the best order on opacus's grid and advises a wider grid
        # when the best is at an end; the bound it returns is still a valid upper bound.
        warnings.filterwarnings(
            "ignore", message="Optimal order is the (largest|smallest) alpha", category=UserWarning
        )
        warnings.filterwarnings("ignore", category=RuntimeWarning, module=r"opacus\.")
        yield
