"""deploy/helm/accord-coordinator: the chart renders, its objects pass the Kubernetes
schema, and what it renders is a coordinator configuration Accord accepts.

No `helm` binary can be installed here (none in the reachable registries), so
`tests/deploy/helmrender` renders the chart: Go text/template with sprig, as Helm does
(see its header for what it does not implement). `kubernetes-validate --strict` (PyPI)
checks every rendered object against the Kubernetes 1.30 schema. Skipped loudly without
Go's sprig and yaml libraries or kubernetes-validate.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
import tomllib
import yaml

from accord.coordinator.config import CoordinatorConfig
from accord.core import configfile

from .tools import DEPLOY, build_helmrender, unavailable

CHART = DEPLOY / "helm" / "accord-coordinator"
KUBERNETES = "1.30.0"
OVERRIDES = """
store:
  urlSecret:
    name: accord-store
    key: url
federation:
  id: grid-forecasting
  extraConfig: |
    clip_norm = 40.0
metricsLabels:
  release: prometheus
"""


@pytest.fixture(scope="module")
def helmrender(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_helmrender(tmp_path_factory.mktemp("helmrender"))


def _render(helmrender: Path, *values: Path) -> dict[str, dict[str, Any]]:
    arguments = [str(helmrender), "-name", "fed"]
    for path in values:
        arguments += ["-f", str(path)]
    done = subprocess.run(
        [*arguments, str(CHART)], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    documents = [d for d in yaml.safe_load_all(done.stdout) if d]
    return {d["kind"]: d for d in documents}


def _validate(objects: dict[str, dict[str, Any]]) -> None:
    try:
        import kubernetes_validate  # type: ignore[import-untyped]
    except ImportError:
        unavailable(
            "kubernetes-validate is not installed", ".venv/bin/pip install kubernetes-validate"
        )
    for kind, document in objects.items():
        try:
            kubernetes_validate.validate(document, KUBERNETES, strict=True)
        except Exception as error:
            raise AssertionError(f"{kind}: {error}") from None


def _coordinator_toml(objects: dict[str, dict[str, Any]]) -> str:
    return str(objects["ConfigMap"]["data"]["coordinator.toml"])


def test_the_chart_is_a_helm_v2_chart() -> None:
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    assert chart["apiVersion"] == "v2" and chart["name"] == CHART.name
    assert re.fullmatch(r"\d+\.\d+\.\d+", chart["version"])
    assert {p.name for p in (CHART / "templates").iterdir()} >= {
        "_helpers.tpl", "configmap.yaml", "service.yaml", "statefulset.yaml",
    }  # fmt: skip


def test_the_default_values_render_valid_kubernetes_objects(helmrender: Path) -> None:
    objects = _render(helmrender)
    assert set(objects) == {"ConfigMap", "Service", "StatefulSet"}
    _validate(objects)
    pod = objects["StatefulSet"]["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    (container,) = pod["containers"]
    for probe in ("livenessProbe", "readinessProbe"):
        assert container[probe]["exec"]["command"] == ["/opt/accord/bin/accord-healthcheck"]
    assert container["resources"]["limits"]["memory"] == "8Gi"
    secrets = [v for v in pod["volumes"] if "secret" in v]
    assert [v["secret"]["secretName"] for v in secrets] == ["accord-coordinator-tls"]
    assert "env" not in pod["initContainers"][0]  # SQLite on the volume by default
    service = objects["Service"]
    assert {p["name"]: p["port"] for p in service["spec"]["ports"]} == {
        "grpc": 50051,
        "metrics": 9464,
    }
    assert service["metadata"]["labels"]["accord.dev/metrics"] == "true"


def test_the_rendered_configuration_is_one_the_coordinator_accepts(
    helmrender: Path, tmp_path: Path
) -> None:
    values = tmp_path / "values.yaml"
    values.write_text(OVERRIDES)
    objects = _render(helmrender, values)
    _validate(objects)
    (init,) = objects["StatefulSet"]["spec"]["template"]["spec"]["initContainers"]
    assert init["env"][0]["valueFrom"]["secretKeyRef"] == {"name": "accord-store", "key": "url"}
    assert objects["Service"]["metadata"]["labels"]["release"] == "prometheus"
    table = tomllib.loads(_coordinator_toml(objects))["coordinator"]
    # What the init container adds from the Secret.
    table["store_url"] = "postgresql://accord:secret@postgres:5432/accord"
    config = configfile.validate(table, CoordinatorConfig, "coordinator", base_dir=tmp_path)
    assert config.federation_id == "grid-forecasting"
    assert config.clip_norm == 40.0
    assert config.metrics_port == 9464 and config.listen_port == 50051
    assert str(config.tls_dir) == "/run/accord/tls"


def test_a_missing_required_value_fails_the_render(helmrender: Path, tmp_path: Path) -> None:
    values = tmp_path / "values.yaml"
    values.write_text('tlsSecret: ""\n')
    done = subprocess.run(
        [str(helmrender), "-f", str(values), str(CHART)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode != 0 and "tlsSecret is required" in done.stderr
