"""Non-IID splits that are not label partitions, and what a split lets an enterprise reach.

The builders of `incident_sets.py` skew labels (Dirichlet proportions per enterprise);
label skew alone makes a local-only model's gap a matter of which labels it has seen.
The options here reshape a built `Benchmark` along the other axes of Kairouz et al.
(2021, "Advances and Open Problems in Federated Learning", section 3.1):

- `feature_skew`: each enterprise's cameras and writers differ. Enterprise k's frames get
  its own brightness, blur and rotation (`CAMERA_SKEW[k mod 3]`, scaled by `strength`),
  and its reports use its own vocabulary: every incident phrase is replaced by the
  enterprise's own wording of that incident (`SPECIFIC_PHRASES[label][k mod 4]`), so a
  model that learnt one enterprise's words must generalise to the others'. Train and
  test splits are both transformed: the skew is part of the enterprise's distribution.
- `quantity_skew`: enterprises hold very different amounts of training data (`shares` of
  their training split kept, in order); test splits are kept whole.

`coverage_ceiling` is the accuracy an enterprise would reach on a test set if it were
right on every label it has seen in training and wrong on every other: the bound that
label skew alone puts on a local-only model. `split_validation` carves a validation
split from training data, so that hyperparameters are never chosen on a test split.
Everything is seeded and deterministic.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

import numpy as np
import numpy.typing as npt

from accord.errors import ConfigError
from accord.participant.data.folder import Example
from accord.participant.data.incident_sets import SPECIFIC_PHRASES, Benchmark, Enterprise

# (brightness factor, Gaussian blur radius in pixels, rotation in degrees) per enterprise.
CAMERA_SKEW = ((1.0, 0.0, 0.0), (0.45, 1.5, 0.0), (1.6, 0.0, 35.0))


def feature_skew(benchmark: Benchmark, *, strength: float = 1.0) -> Benchmark:
    """Give each enterprise its own camera and its own report vocabulary.

    Args:
        benchmark: as built by `incident_sets`.
        strength: 0 keeps the frames as they are; 1 applies `CAMERA_SKEW` in full
            (brightness 1 + strength * (b - 1), blur and rotation times strength).
            The vocabulary skew applies whenever strength > 0.

    Raises:
        ConfigError: strength outside [0, 1].
    """
    if not 0 <= strength <= 1:
        raise ConfigError(f"strength = {strength}: must be in [0, 1]")
    enterprises = []
    for index, enterprise in enumerate(benchmark.enterprises):

        def skewed(example: Example, index: int = index) -> Example:
            if strength == 0:
                return example
            image = _camera(example.image, CAMERA_SKEW[index % len(CAMERA_SKEW)], strength)
            return replace(example, image=image, text=_own_words(example, index))

        enterprises.append(
            replace(
                enterprise,
                train=tuple(skewed(e) for e in enterprise.train),
                test=tuple(skewed(e) for e in enterprise.test),
            )
        )
    settings = {**benchmark.settings, "feature_skew": strength}
    return replace(benchmark, enterprises=tuple(enterprises), settings=settings)


def quantity_skew(benchmark: Benchmark, shares: Sequence[float]) -> Benchmark:
    """Keep only `shares[k]` of enterprise k's training split (at least one sample).

    Raises:
        ConfigError: not one share per enterprise, or a share outside (0, 1].
    """
    if len(shares) != len(benchmark.enterprises):
        raise ConfigError(
            f"shares = {list(shares)}: need one per enterprise ({len(benchmark.enterprises)})"
        )
    if not all(0 < share <= 1 for share in shares):
        raise ConfigError(f"shares = {list(shares)}: each must be in (0, 1]")
    enterprises = tuple(
        replace(e, train=e.train[: max(1, round(share * len(e.train)))])
        for e, share in zip(benchmark.enterprises, shares, strict=True)
    )
    settings = {**benchmark.settings, "quantity_shares": tuple(shares)}
    return replace(benchmark, enterprises=enterprises, settings=settings)


def split_validation(
    enterprise: Enterprise, fraction: float, *, seed: int = 0
) -> tuple[tuple[Example, ...], tuple[Example, ...]]:
    """(fit, validation): a seeded `fraction` of the training split held out (>= 1 each).

    Raises:
        ConfigError: fraction outside (0, 1) or fewer than 2 training samples.
    """
    if not 0 < fraction < 1:
        raise ConfigError(f"fraction = {fraction}: must be in (0, 1)")
    if len(enterprise.train) < 2:
        raise ConfigError(f"{enterprise.name}: needs >= 2 training samples to hold some out")
    order = np.random.default_rng(np.random.SeedSequence([seed, 0x7A1])).permutation(
        len(enterprise.train)
    )
    held = min(len(order) - 1, max(1, round(fraction * len(order))))
    fit = tuple(enterprise.train[i] for i in sorted(order[held:]))
    validation = tuple(enterprise.train[i] for i in sorted(order[:held]))
    return fit, validation


def coverage_ceiling(train: Sequence[Example], test: Sequence[Example]) -> float:
    """The share of `test` whose label occurs in `train` (1.0 for an empty test set)."""
    if not test:
        return 1.0
    seen = {example.label for example in train}
    return sum(example.label in seen for example in test) / len(test)


def _camera(
    image: npt.NDArray[np.uint8], skew: tuple[float, float, float], strength: float
) -> npt.NDArray[np.uint8]:
    from PIL import Image, ImageFilter

    brightness, blur, rotate = skew
    frame = Image.fromarray(image)
    if rotate:
        frame = frame.rotate(rotate * strength, resample=Image.Resampling.BILINEAR)
    if blur:
        frame = frame.filter(ImageFilter.GaussianBlur(radius=blur * strength))
    pixels = np.asarray(frame, dtype=np.float32) * (1 + strength * (brightness - 1))
    return np.clip(pixels, 0, 255).astype(np.uint8)


def _own_words(example: Example, index: int) -> str:
    """The report with every incident phrase in enterprise `index`'s own wording."""
    phrases = SPECIFIC_PHRASES[example.label]
    own = phrases[index % len(phrases)]
    for phrase in phrases:
        if phrase in example.text:
            return example.text.replace(phrase, own)
    return example.text  # a vague report names no incident: nothing to reword
