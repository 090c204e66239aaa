"""The server optimizer, run by every participant on the decrypted mean change.

Theory of operation (Reddi et al. 2021, "Adaptive Federated Optimization"; Hsu et al.
2019 for FedAvgM): the mean of the participants' deltas, Delta_t, is a pseudo-gradient.
Nobody in Accord holds a server that could apply it (the coordinator never sees the
aggregate in the `ckks` profiles), so each participant applies it itself, after
decryption, with the same deterministic rule:

    fedavg   x_{t+1} = x_t + eta * Delta_t
    fedavgm  m_t = beta1 * m_{t-1} + Delta_t
             x_{t+1} = x_t + eta * m_t
    fedadam  m_t = beta1 * m_{t-1} + (1 - beta1) * Delta_t
             v_t = beta2 * v_{t-1} + (1 - beta2) * Delta_t^2
             x_{t+1} = x_t + eta * m_t / (sqrt(v_t) + tau)

Invariant: all arithmetic is elementwise float32 numpy in a fixed order, with no
reduction, no threading and no randomness, so participants that start from the same
state and apply the same aggregates hold bit-identical global adapters (a test checks
it). The state (m, v, step) is saved next to the adapter and restored on restart.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from pathlib import Path

import numpy as np
import numpy.typing as npt

from accord.errors import ConfigError, IntegrityError

STATE_FILE = "server_optimizer.npz"
STATE_VERSION = 1


class ServerRule(str, Enum):
    FEDAVG = "fedavg"
    FEDAVGM = "fedavgm"
    FEDADAM = "fedadam"


@dataclass(frozen=True)
class ServerOptimizerSettings:
    """The rule and its constants.

    Attributes:
        rule: fedavg, fedavgm or fedadam.
        learning_rate: eta (1.0 with fedavg is plain FedAvg).
        beta1: FedAvgM's momentum, FedAdam's first-moment decay.
        beta2: FedAdam's second-moment decay.
        tau: FedAdam's adaptivity floor (Reddi et al. use 1e-3).
    """

    rule: ServerRule = ServerRule.FEDAVG
    learning_rate: float = 1.0
    beta1: float = 0.9
    beta2: float = 0.99
    tau: float = 1e-3

    def __post_init__(self) -> None:
        if not self.learning_rate > 0:
            raise ConfigError(
                f"[participant.training] server_learning_rate = {self.learning_rate}: must be > 0"
            )
        if not (0 <= self.beta1 < 1 and 0 <= self.beta2 < 1):
            raise ConfigError(
                f"[participant.training] server_momentum = {self.beta1}: must be in [0, 1)"
            )
        if not self.tau > 0:
            raise ConfigError(f"server optimizer tau = {self.tau}: must be > 0")


class ServerOptimizer:
    """Applies the mean change to the global adapter; holds m, v and the step count.

    Args:
        settings: rule and constants.
        size: number of adapter parameters.
    """

    def __init__(self, settings: ServerOptimizerSettings, size: int) -> None:
        self.settings = settings
        self.size = size
        self.step_count = 0
        self.m = np.zeros(size, dtype=np.float32)
        self.v = np.zeros(size, dtype=np.float32)

    def step(
        self, global_vector: npt.NDArray[np.float32], mean_delta: npt.NDArray[np.float32]
    ) -> npt.NDArray[np.float32]:
        """The next global adapter (a new array); updates m, v and the step count.

        Raises:
            ValueError: a vector's shape is not (size,).
            IntegrityError: the mean change holds a NaN or an infinity.
        """
        if global_vector.shape != (self.size,) or mean_delta.shape != (self.size,):
            raise ValueError(
                f"mean delta of shape {mean_delta.shape} and adapter {global_vector.shape}, "
                f"expected ({self.size},)"
            )
        if not np.all(np.isfinite(mean_delta)):
            raise IntegrityError("the mean change holds a NaN or an infinity")
        s = self.settings
        x = global_vector.astype(np.float32, copy=True)
        delta = mean_delta.astype(np.float32, copy=False)
        eta = np.float32(s.learning_rate)
        b1, b2 = np.float32(s.beta1), np.float32(s.beta2)
        if s.rule is ServerRule.FEDAVG:
            x += eta * delta
        elif s.rule is ServerRule.FEDAVGM:
            self.m = b1 * self.m + delta
            x += eta * self.m
        else:
            one = np.float32(1.0)
            self.m = b1 * self.m + (one - b1) * delta
            self.v = b2 * self.v + (one - b2) * (delta * delta)
            x += eta * self.m / (np.sqrt(self.v) + np.float32(s.tau))
        self.step_count += 1
        return x.astype(np.float32, copy=False)

    def save(self, directory: Path) -> None:
        """Write m, v and the step count to `directory/server_optimizer.npz`."""
        with (Path(directory) / STATE_FILE).open("wb") as handle:
            np.savez(
                handle,
                version=np.int64(STATE_VERSION),
                rule=np.array(self.settings.rule.value),
                step=np.int64(self.step_count),
                m=self.m,
                v=self.v,
            )

    def load(self, directory: Path) -> None:
        """Restore what `save` wrote; a folder without the file leaves the fresh state.

        Raises:
            ConfigError: the file was written by another rule or for another adapter size.
        """
        path = Path(directory) / STATE_FILE
        if not path.exists():
            return
        with np.load(path, allow_pickle=False) as data:
            rule = str(data["rule"])
            if int(data["version"]) != STATE_VERSION or rule != self.settings.rule.value:
                raise ConfigError(
                    f"{path}: written by server optimizer {rule!r}, configured "
                    f"{self.settings.rule.value!r}; keep server_optimizer fixed for a federation"
                )
            if data["m"].shape != (self.size,):
                raise ConfigError(f"{path}: state for {data['m'].size} parameters, not {self.size}")
            self.step_count = int(data["step"])
            self.m = data["m"].astype(np.float32)
            self.v = data["v"].astype(np.float32)
