"""The synthetic city-safety benchmark (`accord demo`'s data): three domains, N enterprises.

Three domains, each with its own label set (they overlap only partly) and its own image
and report style; the frames are drawn procedurally, one motif per incident type. With N
enterprises, N >= 3, enterprise i has domain i mod 3 as its home and enterprises of one
home domain get different Dirichlet label proportions; with N = 2 the first has two home
domains. A `home_share` of each enterprise's incidents (0.7 by default) happen in its home
domain(s), the rest in the others: an energy utility's cameras mostly watch its sites, but
about one incident in three is on a street or at a house next to them. That tail is what
a member cannot learn well from its own records and learns from the federation; at
`home_share = 1` the domains are disjoint and every member is self-sufficient on its own
test split (docs/ml.md, "The demo").
Every frame, report and label is generated: this data set is synthetic and says nothing
about real incidents. What all benchmarks share (labels, reports, the `Benchmark`
container) is in `incident_sets.py`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

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
    test_per_enterprise: int = 300,
    seed: int = 0,
    dirichlet_alpha: float = 1.0,
    vague_share: float = 0.3,
    dark_share: float = 0.25,
    frame_size: int = 64,
    home_share: float = 0.7,
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
        home_share: share of each enterprise's samples from its home domain(s); 1 keeps
            every enterprise inside its own.
    """
    check_common(n_enterprises, dirichlet_alpha, vague_share, 0.5)
    if not 0 <= dark_share < 1:
        raise ConfigError(f"dark_share = {dark_share}: must be in [0, 1)")
    if not 0 < home_share <= 1:
        raise ConfigError(f"home_share = {home_share}: must be in (0, 1]")
    enterprises = [
        _enterprise(
            index,
            n_enterprises,
            seed,
            home_share,
            dirichlet_alpha,
            (train_per_enterprise, test_per_enterprise),
            frame_size=frame_size,
            dark_share=dark_share,
            vague_share=vague_share,
        )
        for index in range(n_enterprises)
    ]
    return Benchmark(
        name="city-safety",
        labels=CITY_LABELS,
        enterprises=tuple(enterprises),
        settings={
            **skew_settings(seed, dirichlet_alpha, vague_share),
            "dark_share": dark_share,
            **({"home_share": home_share} if home_share < 1 else {}),
            "n_enterprises": n_enterprises,
            "synthetic": True,
        },
    )


def _enterprise(
    index: int,
    n_enterprises: int,
    seed: int,
    home_share: float,
    dirichlet_alpha: float,
    sizes: tuple[int, int],
    **look: Any,
) -> Enterprise:
    """Enterprise `index`: its home domains, its label mix per domain, then its samples
    (`sizes`: train, test; `look`: `_city_example`'s frame and report settings)."""
    mine = _domains_of(index, n_enterprises)
    rng = np.random.default_rng(np.random.SeedSequence([seed, 0xC17, index]))
    # Home domains first, so that home_share = 1 draws exactly as before it existed.
    away = [d for d in CITY_DOMAINS if d not in mine] if home_share < 1 else []
    proportions = {
        d: rng.dirichlet(np.full(len(CITY_DOMAINS[d]), dirichlet_alpha)) for d in mine + away
    }
    train, test = sizes
    examples = [
        _city_example(
            rng,
            f"{index}-{position:05d}",
            _where(rng, mine, away, home_share),
            proportions,
            split="train" if position < train else "test",
            **look,
        )
        for position in range(train + test)
    ]
    return Enterprise.of(_enterprise_name(index, n_enterprises, mine), "+".join(mine), examples)


def _domains_of(index: int, n_enterprises: int) -> list[str]:
    """Enterprise `index`'s domains: one each when N >= 3, else every N-th of the three."""
    domains = list(CITY_DOMAINS)
    return (
        [d for position, d in enumerate(domains) if position % n_enterprises == index]
        if n_enterprises < len(domains)
        else [domains[index % len(domains)]]
    )


def _where(
    rng: np.random.Generator, home: list[str], away: list[str], home_share: float
) -> list[str]:
    """The domains a sample may come from: the home ones, or (1 - home_share) of the time
    the others; no draw when home_share = 1 (`away` empty)."""
    if not away or rng.random() < home_share:
        return home
    return away


def _enterprise_name(index: int, n_enterprises: int, mine: Sequence[str]) -> str:
    """Its domains' names, numbered (`energy-2`) when several enterprises share a domain."""
    domains = list(CITY_DOMAINS)
    same = [
        i
        for i in range(n_enterprises)
        if len(mine) == 1 and i % len(domains) == index % len(domains)
    ]
    return "+".join(mine) if len(same) <= 1 else f"{mine[0]}-{same.index(index) + 1}"


def _city_example(
    rng: np.random.Generator,
    example_id: str,
    mine: Sequence[str],
    proportions: dict[str, npt.NDArray[np.float64]],
    frame_size: int,
    *,
    dark_share: float,
    vague_share: float,
    split: str,
) -> Example:
    """One sample: one of the domains `mine`, a label by its proportions, frame, report."""
    domains = list(CITY_DOMAINS)
    domain = mine[int(rng.integers(len(mine)))]
    labels = CITY_DOMAINS[domain]
    label = labels[int(rng.choice(len(labels), p=proportions[domain]))]
    frame = _city_frame(rng, label, domain, frame_size, dark=bool(rng.random() < dark_share))
    text = make_report(rng, label, domains.index(domain), vague=bool(rng.random() < vague_share))
    return Example(example_id, frame, text, label, split)


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


# ---- one motif per incident type ----
# Each draws on `d`, a Pillow `ImageDraw`; `j` maps a coordinate at 64-pixel scale to
# jittered pixels, `s` is the frame's scale, `width` its line width. Only the gas-leak
# and vandalism motifs draw from `rng`.

Jitter = Callable[[float], float]


def _draw_motif(
    d: Any, rng: np.random.Generator, label: str, j: Jitter, s: float, size: int
) -> None:
    """Draw the incident type's motif (a shape and colour of its own) on the frame.

    `d` is a Pillow `ImageDraw`; `j` maps a coordinate at 64-pixel scale to jittered pixels.
    """
    _MOTIFS[label](d, rng, j, s, size, max(1, int(3 * s)))


def _fire(d: Any, rng: np.random.Generator, j: Jitter, s: float, size: int, width: int) -> None:
    for x in (20, 32, 44):
        d.polygon([(j(x - 8), j(58)), (j(x), j(26)), (j(x + 8), j(58))], fill=(250, 110, 20))
    d.polygon([(j(26), j(58)), (j(32), j(38)), (j(38), j(58))], fill=(255, 220, 60))


def _flood(d: Any, rng: np.random.Generator, j: Jitter, s: float, size: int, width: int) -> None:
    d.rectangle([0, j(40), size, size], fill=(40, 90, 200))
    for y in (44, 50, 56):
        d.arc([j(4), j(y - 4), j(30), j(y + 4)], 0, 180, fill=(180, 210, 255), width=width)
        d.arc([j(32), j(y - 4), j(60), j(y + 4)], 0, 180, fill=(180, 210, 255), width=width)


def _power_outage(
    d: Any, rng: np.random.Generator, j: Jitter, s: float, size: int, width: int
) -> None:
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


def _gas_leak(d: Any, rng: np.random.Generator, j: Jitter, s: float, size: int, width: int) -> None:
    for _ in range(5):
        cx = j(32) + float(rng.uniform(-14, 14)) * s
        cy = j(30) + float(rng.uniform(-12, 12)) * s
        r = 9.0 * s
        d.ellipse([cx - r, cy - r, cx + r, cy + r], fill=(170, 210, 60))


def _structural_damage(
    d: Any, rng: np.random.Generator, j: Jitter, s: float, size: int, width: int
) -> None:
    d.rectangle([j(14), j(12), j(50), j(60)], fill=(150, 150, 150))
    d.line(
        [(j(18), j(14)), (j(30), j(34)), (j(24), j(44)), (j(44), j(60))],
        fill=(10, 10, 10),
        width=width,
    )


def _traffic_collision(
    d: Any, rng: np.random.Generator, j: Jitter, s: float, size: int, width: int
) -> None:
    d.rectangle([j(8), j(34), j(34), j(48)], fill=(200, 30, 30))
    d.rectangle([j(28), j(28), j(56), j(42)], fill=(30, 60, 200))
    d.polygon([(j(31), j(24)), (j(35), j(33)), (j(27), j(33))], fill=(255, 255, 255))


def _fallen_tree(
    d: Any, rng: np.random.Generator, j: Jitter, s: float, size: int, width: int
) -> None:
    d.line([(j(6), j(20)), (j(58), j(52))], fill=(100, 60, 20), width=max(2, int(6 * s)))
    for x, y in ((10, 16), (16, 24), (8, 28)):
        d.ellipse([j(x - 7), j(y - 7), j(x + 7), j(y + 7)], fill=(30, 140, 40))


def _vandalism(
    d: Any, rng: np.random.Generator, j: Jitter, s: float, size: int, width: int
) -> None:
    colors = ((230, 30, 200), (30, 230, 230), (250, 250, 30))
    for k in range(4):
        points = [(j(float(rng.uniform(6, 58))), j(float(rng.uniform(10, 56)))) for _ in range(4)]
        d.line(points, fill=colors[k % 3], width=width)


def _water_main_break(
    d: Any, rng: np.random.Generator, j: Jitter, s: float, size: int, width: int
) -> None:
    d.rectangle([j(4), j(50), j(60), j(56)], fill=(110, 110, 120))
    for dx in (-10, 0, 10):
        d.line([(j(32), j(50)), (j(32 + 2 * dx), j(10))], fill=(120, 200, 255), width=width)


def _medical_emergency(
    d: Any, rng: np.random.Generator, j: Jitter, s: float, size: int, width: int
) -> None:
    d.rectangle([j(18), j(18), j(46), j(46)], fill=(245, 245, 245))
    d.rectangle([j(29), j(21), j(35), j(43)], fill=(220, 20, 30))
    d.rectangle([j(21), j(29), j(43), j(35)], fill=(220, 20, 30))


_MOTIFS: dict[str, Callable[[Any, np.random.Generator, Jitter, float, int, int], None]] = {
    "fire": _fire,
    "flood": _flood,
    "power_outage": _power_outage,
    "gas_leak": _gas_leak,
    "structural_damage": _structural_damage,
    "traffic_collision": _traffic_collision,
    "fallen_tree": _fallen_tree,
    "vandalism": _vandalism,
    "water_main_break": _water_main_break,
    "medical_emergency": _medical_emergency,
}
"""The motif drawer of each incident type; every city label has one."""
