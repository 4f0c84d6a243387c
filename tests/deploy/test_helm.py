"""deploy/helm/flowloom: `helm lint`, and every rendering validated against the Kubernetes
1.37 schemas (kubernetes-validate); the CRDs it uses (ServiceMonitor, CloudNativePG
Cluster) are checked for the fields the operators need."""

from __future__ import annotations

import functools
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from tests.deploy.tools import require_tool

CHART = Path(__file__).resolve().parents[2] / "deploy" / "helm" / "flowloom"
K8S = "1.37.0"
CRDS = {("monitoring.coreos.com/v1", "ServiceMonitor"), ("postgresql.cnpg.io/v1", "Cluster")}

VARIANTS = {
    "defaults": [],
    "cnpg-hsm": ["--set", "database.mode=cnpg", "--set", "keys.provider=pkcs11"],
    "kms-fixed": [
        "--set", "keys.provider=kms",
        "--set", "server.autoscaling.enabled=false",
        "--set", "gateway.autoscaling.enabled=false",
        "--set", "serviceMonitor.enabled=false",
        "--set", "networkPolicy.enabled=false",
    ],
    "no-gateway": ["--set", "gateway.enabled=false"],
}  # fmt: skip


@pytest.fixture(scope="module")
def helm() -> str:
    return require_tool("helm", "helm")


@functools.cache
def _rendered(helm: str, args: tuple[str, ...]) -> str:
    done = subprocess.run(
        [helm, "template", "fl", str(CHART), *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def _render(helm: str, args: list[str]) -> list[dict[str, Any]]:
    """The chart rendered with ``args`` (each rendering made once per session)."""
    return [d for d in yaml.safe_load_all(_rendered(helm, tuple(args))) if d]


def _by_kind(docs: list[dict[str, Any]], kind: str) -> Iterator[dict[str, Any]]:
    return (d for d in docs if d["kind"] == kind)


def _server_pod(docs: list[dict[str, Any]]) -> dict[str, Any]:
    found = [d for d in _by_kind(docs, "Deployment") if d["metadata"]["name"] == "fl-server"]
    pod: dict[str, Any] = found[0]["spec"]["template"]["spec"]
    return pod


def test_the_chart_lints(helm: str) -> None:
    done = subprocess.run(
        [helm, "lint", "--strict", str(CHART)], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_every_rendering_validates(helm: str, variant: str) -> None:
    docs = _render(helm, VARIANTS[variant])
    for doc in docs:
        if (doc["apiVersion"], doc["kind"]) in CRDS:
            assert doc["spec"], doc
            continue
        kubernetes_validate.validate(doc, K8S, strict=True)
    for deployment in _by_kind(docs, "Deployment"):
        pod = deployment["spec"]["template"]["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True
        for container in pod["containers"]:
            assert container["securityContext"]["readOnlyRootFilesystem"] is True
            assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
            assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
        assert deployment["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"] == 0


def test_the_default_rendering_has_every_part() -> None:
    helm = require_tool("helm", "helm")
    kinds = sorted(d["kind"] for d in _render(helm, []))
    assert kinds == sorted(
        ["Deployment", "HorizontalPodAutoscaler", "NetworkPolicy", "PodDisruptionBudget"] * 2
        + ["Service", "ServiceMonitor"] * 2
    )


def test_keys_come_from_the_secret_or_the_token(helm: str) -> None:
    default = _server_pod(_render(helm, []))
    keys = next(v for v in default["volumes"] if v["name"] == "keys")
    assert keys["secret"]["secretName"] == "flowloom-keys"
    hsm_docs = _render(helm, VARIANTS["cnpg-hsm"])
    hsm = _server_pod(hsm_docs)
    assert all(v["name"] != "keys" for v in hsm["volumes"])
    env = {e["name"]: e for e in hsm["containers"][0]["env"]}
    assert env["FLOWLOOM_SIGNING_KEYS"]["value"] == "pkcs11"
    assert env["FLOWLOOM_PKCS11_PIN"]["valueFrom"]["secretKeyRef"]["name"] == "flowloom-hsm-pin"
    assert env["FLOWLOOM_SERVER_DATABASE"]["valueFrom"]["secretKeyRef"] == {
        "name": "fl-db-app",
        "key": "uri",
    }
    cluster = next(_by_kind(hsm_docs, "Cluster"))
    assert cluster["metadata"]["name"] == "fl-db" and cluster["spec"]["instances"] == 3


def test_a_bad_database_mode_is_refused(helm: str) -> None:
    done = subprocess.run(
        [helm, "template", "fl", str(CHART), "--set", "database.mode=sqlite"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode != 0 and "database.mode must be external or cnpg" in done.stderr
