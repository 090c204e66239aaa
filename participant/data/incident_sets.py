"""What the multimodal incident benchmarks share; each is seeded and needs no download.

Every benchmark pairs a camera frame with an incident report and labels it with an
incident type. Enterprises differ in three ways, so that none of them alone covers the
pooled test set (non-IID by design):

- label skew: each enterprise's labels follow its own Dirichlet(alpha) proportions
  (smaller alpha, stronger skew);
- camera style: exposure, noise, blur, tint and resolution of the frames;
- report style: the wording and template of the reports.

A share of reports is deliberately vague (`vague_share`: they name no incident type)
and a share of frames is nearly uninformative (dark, noisy or tiny), so neither
modality alone suffices. Optionally (`decoy_share`, the digits benchmark only) a share of
the specific reports also names an incident type that was ruled out ("flames and thick
smoke, not a flooded underpass"): a frozen sentence encoder averages both mentions, so
those reports are where tuning the text tower has something to learn.

The benchmarks: `city_safety.py` (synthetic, for `accord demo`: three domains drawn
procedurally) and `digit_incidents.py` (real handwritten digits as camera frames). This
module holds their label set, the incident reports (`make_report`), the `Benchmark`
container and its checks, and `write_benchmark`, which stores a benchmark in the
manifest layout (`folder.py`): one folder per enterprise and one `pooled-test` folder,
each with `labels.json`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

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

DECOY_TEMPLATES = (
    "{detail}, not {decoy}",
    "not {decoy} but {detail}",
    "{decoy} ruled out; {detail}",
    "no {decoy}; {detail} instead",
)
"""How a report with a decoy words the incident (`detail`) and the ruled-out one."""

REPORT_STYLES = (
    # formal operator log
    "Incident log {ref}: {detail} observed at {place} at {time}. Crew dispatched.",
    # terse field note
    "{time} {place}: {detail}. pls advise",
    # resident message
    "Hello, I want to report {detail} near {place}, noticed around {time}. Thank you.",
)


def make_report(
    rng: np.random.Generator, label: str, style: int, *, vague: bool, decoy: bool = False
) -> str:
    """An incident report in one of `REPORT_STYLES`; a vague one names no incident type;
    a specific one with `decoy` also names another incident type, ruled out
    (`DECOY_TEMPLATES`). Without a decoy it draws from `rng` exactly as before decoys
    existed, so every benchmark made without them is unchanged."""
    phrases = VAGUE_PHRASES if vague else SPECIFIC_PHRASES[label]
    template = REPORT_STYLES[style % len(REPORT_STYLES)]
    ref = f"#{int(rng.integers(1000, 9999))}"
    detail = phrases[int(rng.integers(len(phrases)))]
    place = PLACES[int(rng.integers(len(PLACES)))]
    time = f"{int(rng.integers(0, 24)):02d}:{int(rng.integers(0, 60)):02d}"
    if decoy and not vague:
        others = [other for other in SPECIFIC_PHRASES if other != label]
        ruled_out = SPECIFIC_PHRASES[others[int(rng.integers(len(others)))]]
        wording = DECOY_TEMPLATES[int(rng.integers(len(DECOY_TEMPLATES)))]
        detail = wording.format(detail=detail, decoy=ruled_out[int(rng.integers(len(ruled_out)))])
    return template.format(ref=ref, detail=detail, place=place, time=time)


# ---- the benchmark container ----


@dataclass(frozen=True)
class Enterprise:
    """One enterprise's data: name, domain(s), train and test examples."""

    name: str
    domain: str
    train: tuple[Example, ...]
    test: tuple[Example, ...]

    @classmethod
    def of(cls, name: str, domain: str, examples: Sequence[Example]) -> Enterprise:
        """An enterprise whose examples go to train or test by their `split`."""
        return cls(
            name=name,
            domain=domain,
            train=tuple(e for e in examples if e.split == "train"),
            test=tuple(e for e in examples if e.split == "test"),
        )


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


def skew_settings(seed: int, dirichlet_alpha: float, vague_share: float) -> dict[str, object]:
    """The settings every benchmark records in `Benchmark.settings`, in this order."""
    return {"seed": seed, "dirichlet_alpha": dirichlet_alpha, "vague_share": vague_share}


def check_common(
    n_enterprises: int, dirichlet_alpha: float, vague_share: float, test_fraction: float
) -> None:
    """Refuse settings no benchmark can honour.

    Raises:
        ConfigError: fewer than 2 enterprises, alpha <= 0, or a share out of range.
    """
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
