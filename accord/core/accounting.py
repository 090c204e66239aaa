"""Epsilon from DP-SGD runs; never a sum of epsilons. No torch needed.

One computation for every place that states an epsilon: the participant's trainer (the
epsilon it reports, the noise it calibrates, `max_epsilon`'s refusals) and `accord
audit budget`, which recomputes it from the runs a ledger records.

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

Accountants (an auditor's machine needs no training stack):

- ``rdp`` (default): Google's `dp_accounting` RDP accountant (Mironov 2017, with the
  conversion of Balle et al. 2020), over all its orders: what the participant records
  and calibrates its noise with (opacus's RDP reads up to 2% lower at the demo's
  sampling rate of 0.32, so it is not used for either; docs/audit.md);
- ``pld``: `dp_accounting`'s privacy loss distribution accountant (numerically tight);
- ``prv``: opacus's PRV accountant (Gopi et al. 2021, tight), only where opacus is
  installed (it brings torch);
- ``gdp``: Gaussian DP by the central limit theorem (Dong et al. 2019; mu-GDP composes
  as the root of the sum of the squares), computed here with scipy. It is an
  approximation that can understate epsilon for few steps or large sampling rates; the
  audit marks it.

PLD and PRV discretise the privacy loss; where it is enormous (client-level z = 0.01
with a handful of participants: epsilon in the thousands) they fail or run for minutes,
so above `TIGHT_LIMIT` (by RDP) they report the RDP bound, which never understates.
"""

from __future__ import annotations

import logging
import math
import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from accord.errors import UsageError

ACCOUNTANTS = ("rdp", "pld", "prv", "gdp")
"""Accountants `accord audit budget --accountant` accepts."""

DEFAULT_ACCOUNTANT = "rdp"

UNDERSTATES = frozenset({"gdp"})
"""Accountants whose epsilon is an approximation that may understate the true loss."""

TIGHT_LIMIT = 100.0
"""Above this RDP epsilon, PLD and PRV are not attempted and the RDP bound is reported."""

Run = tuple[float, float, int]


def epsilon(runs: Sequence[Run], delta: float, accountant: str = DEFAULT_ACCOUNTANT) -> float:
    """Epsilon at ``delta`` of all ``runs`` composed (0.0 when no step was taken).

    Args:
        runs: ``(noise_multiplier, sample_rate, steps)`` runs, in any order.
        delta: the target delta, in (0, 1).
        accountant: ``rdp``, ``pld``, ``prv`` or ``gdp``.

    Returns:
        Epsilon; ``math.inf`` when a run has no noise.

    Raises:
        UsageError: an unknown accountant, a delta outside (0, 1), a run out of range, or
            ``prv`` without opacus installed.
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
    with _quiet():
        if accountant == "gdp":
            return _gdp_epsilon(taken, delta)
        rdp = _rdp_epsilon(taken, delta)
        if accountant == "rdp":
            return rdp
        tight = _tight_or_none(accountant, taken, delta, rdp)
        return tight if tight is not None else rdp


def prv_falls_back(runs: Sequence[Run], delta: float, accountant: str = "prv") -> bool:
    """Whether ``epsilon(runs, delta, accountant)`` (``prv`` or ``pld``) reports RDP's bound.

    PRV and PLD discretise the privacy loss; where it is enormous (a noise multiplier far
    below 1, such as client-level z = 0.01 with a handful of participants) they fail, and
    the RDP upper bound is reported instead.
    """
    taken = [(float(s), float(q), int(n)) for s, q, n in runs if int(n) > 0 and q > 0]
    if not taken:
        return False
    with _quiet():
        return _tight_or_none(accountant, taken, delta, _rdp_epsilon(taken, delta)) is None


def noise_multiplier(
    target_epsilon: float,
    delta: float,
    sample_rate: float,
    steps: int,
    accountant: str = DEFAULT_ACCOUNTANT,
    *,
    tolerance: float = 0.01,
) -> float:
    """The noise multiplier whose ``steps`` steps at ``sample_rate`` spend at most
    ``target_epsilon`` at ``delta`` by ``accountant``, and at least ``target_epsilon -
    tolerance`` (a bisection over sigma, as opacus's ``get_noise_multiplier`` does).

    Raises:
        UsageError: a target, delta, rate or step count out of range.
    """
    if not target_epsilon > 0 or steps < 1 or not 0 < sample_rate <= 1:
        raise UsageError(
            f"target_epsilon {target_epsilon}, steps {steps}, sample_rate {sample_rate}: "
            "need a positive target, at least one step and a rate in (0, 1]"
        )

    def spent(sigma: float) -> float:
        return epsilon([(sigma, sample_rate, steps)], delta, accountant)

    low, high = 0.0, 10.0
    while spent(high) > target_epsilon:
        low, high = high, 2 * high
    while target_epsilon - spent(high) > tolerance and high - low > 1e-6:
        middle = (low + high) / 2
        if spent(middle) > target_epsilon:
            low = middle
        else:
            high = middle
    return high


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


def _event(run: Run) -> Any:
    import dp_accounting

    sigma, rate, _ = run
    return dp_accounting.PoissonSampledDpEvent(rate, dp_accounting.GaussianDpEvent(sigma))


def _rdp_epsilon(runs: Sequence[Run], delta: float) -> float:
    import dp_accounting

    accountant = dp_accounting.rdp.RdpAccountant()
    for run in runs:
        accountant.compose(_event(run), run[2])
    return float(accountant.get_epsilon(delta))


def _tight_or_none(accountant: str, runs: Sequence[Run], delta: float, rdp: float) -> float | None:
    """PLD's or PRV's epsilon, or None where its numerics fail (see the module docstring).

    `rdp` is the runs' RDP epsilon: above `TIGHT_LIMIT` the tight accountants are not tried.
    """
    if not rdp <= TIGHT_LIMIT:
        return None
    try:
        if accountant == "pld":
            import dp_accounting

            pld = dp_accounting.pld.PLDAccountant(value_discretization_interval=1e-3)
            for run in runs:
                pld.compose(_event(run), run[2])
            return float(pld.get_epsilon(delta))
        return _prv_epsilon(runs, delta)
    except (RuntimeError, ValueError, OverflowError, FloatingPointError):
        return None


def _prv_epsilon(runs: Sequence[Run], delta: float) -> float:
    try:
        from opacus.accountants import PRVAccountant
    except ImportError:
        raise UsageError(
            "--accountant prv needs opacus (it comes with the participant's training stack); "
            "rdp, pld and gdp need no torch"
        ) from None
    prv = PRVAccountant()
    prv.history = [tuple(run) for run in runs]
    return float(prv.get_epsilon(delta=delta))


def _gdp_epsilon(runs: Sequence[Run], delta: float) -> float:
    """mu-GDP of Poisson-subsampled Gaussian runs by the CLT (Bu et al. 2020, eq. 6)."""
    mu_squared = 0.0
    for sigma, rate, steps in runs:
        try:
            mu_squared += rate**2 * steps * math.expm1(sigma**-2)
        except OverflowError:  # a tiny noise multiplier: mu is infinite, epsilon too
            return math.inf
    if not math.isfinite(mu_squared):
        return math.inf
    return _eps_from_mu(math.sqrt(mu_squared), delta)


def _eps_from_mu(mu: float, delta: float) -> float:
    """The epsilon at which mu-GDP's delta(epsilon) falls to ``delta`` (Dong et al. 2019)."""
    from scipy.optimize import brentq
    from scipy.stats import norm

    def gap(eps: float) -> float:
        return float(
            norm.cdf(-eps / mu + mu / 2) - math.exp(eps) * norm.cdf(-eps / mu - mu / 2) - delta
        )

    if gap(0.0) <= 0:
        return 0.0
    if gap(500.0) > 0:  # no root below epsilon 500: as good as no privacy
        return math.inf
    return float(brentq(gap, 0.0, 500.0))


@contextmanager
def _quiet() -> Iterator[None]:
    with warnings.catch_warnings():
        # The RDP conversion picks the best order on opacus's grid and advises a wider grid
        # when the best is at an end; the bound it returns is still a valid upper bound.
        warnings.filterwarnings(
            "ignore", message="Optimal order is the (largest|smallest) alpha", category=UserWarning
        )
        warnings.filterwarnings("ignore", category=RuntimeWarning, module=r"opacus\.")
        # dp_accounting logs (absl) each fractional order it skips at large sampling rates.
        previous = logging.getLogger("absl").level
        logging.getLogger("absl").setLevel(logging.ERROR)
        try:
            yield
        finally:
            logging.getLogger("absl").setLevel(previous)
