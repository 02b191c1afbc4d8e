"""Contract test of ``deploy/production``: what ``kubectl apply -k`` deploys would run.

The manifests are rendered as kustomize would (``deploy.kustomize_render``; no
cluster), then for every container of every workload:

* its args parse with catstream's CLI (``catstream.cli.build_parser``) into a
  complete command (the image's entrypoint is ``catstream``);
* every environment variable it gets (env, and envFrom of the ConfigMap and of
  the Secret, whose keys come from ``secret.example.yaml``) is a ``Settings``
  field, or a third-party variable listed below with its reason; and the
  ``Settings`` built from that environment validates;
* every probe's port (and each Service's targetPort, and the Prometheus scrape
  port) is a port the process binds: the API binds ``worker_web_port`` on
  ``api_host``, which must be every interface for the kubelet to reach it.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from catstream.cli import build_parser
from catstream.settings import PROJECT_ROOT, Settings
from deploy.kustomize_render import KustomizeError, pod_containers, render

PRODUCTION = PROJECT_ROOT / "deploy" / "production"
CATSTREAM_IMAGE = "registry.example.com/catstream/catstream"
ALL_INTERFACES = {"0.0.0.0", "::", ""}
# Variables other programs read (not catstream's Settings), and why they are set.
THIRD_PARTY_ENV = {
    "HF_HUB_OFFLINE": "huggingface_hub: never download at runtime, models are in the image",
    "OMP_NUM_THREADS": "torch/onnxruntime CPU threads inside Triton's python backend",
}
assert not any(name.startswith("CATSTREAM_") for name in THIRD_PARTY_ENV)
# tritonserver's listening ports: flag → default.
TRITON_PORT_FLAGS = {"--http-port": 8000, "--grpc-port": 8001, "--metrics-port": 8002}
PROBES = ("startupProbe", "readinessProbe", "livenessProbe")

Obj = dict[str, Any]


@pytest.fixture(scope="module")
def objects() -> list[Obj]:
    return render(PRODUCTION)


def workloads(objects: list[Obj]) -> Iterator[tuple[Obj, Obj]]:
    for obj in objects:
        for container in pod_containers(obj):
            yield obj, container


def by_kind_name(objects: list[Obj], kind: str, name: str) -> Obj | None:
    return next((o for o in objects if o["kind"] == kind and o["metadata"]["name"] == name), None)


def secret_template() -> dict[str, Obj]:
    """The Secrets created out of band, as secret.example.yaml describes them."""
    docs = yaml.safe_load_all((PRODUCTION / "secret.example.yaml").read_text())
    return {doc["metadata"]["name"]: doc for doc in docs if doc}


def container_env(objects: list[Obj], container: Obj) -> dict[str, str]:
    """Every variable the container starts with (values from fieldRefs are stand-ins)."""
    env: dict[str, str] = {}
    for source in container.get("envFrom", []):
        if "configMapRef" in source:
            name = source["configMapRef"]["name"]
            config_map = by_kind_name(objects, "ConfigMap", name)
            assert config_map is not None, f"envFrom names ConfigMap {name!r}, not deployed"
            env.update({k: str(v) for k, v in config_map.get("data", {}).items()})
        if "secretRef" in source:
            name = source["secretRef"]["name"]
            secret = by_kind_name(objects, "Secret", name) or secret_template().get(name)
            assert secret is not None, f"envFrom names Secret {name!r}, in no manifest or template"
            keys = {**secret.get("data", {}), **secret.get("stringData", {})}
            env.update({k: "placeholder-secret" for k in keys})
    for variable in container.get("env", []):
        env[variable["name"]] = str(variable.get("value", "pod-0"))
    return env


def settings_from(env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> Settings:
    """The Settings a process in that environment loads (and nothing from this machine)."""
    for name in [n for n in os.environ if n.startswith("CATSTREAM_")]:
        monkeypatch.delenv(name)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return Settings()


def parse_catstream_args(args: list[str]) -> argparse.Namespace:
    errors = io.StringIO()
    try:
        with contextlib.redirect_stderr(errors):
            return build_parser(args).parse_args(args)
    except SystemExit:
        command = " ".join(args)
        raise AssertionError(f"`catstream {command}` does not parse: {errors.getvalue()}") from None


def runs_catstream(container: Obj) -> bool:
    return str(container["image"]).split(":")[0] == CATSTREAM_IMAGE and "command" not in container


def bound_ports(objects: list[Obj], container: Obj, monkeypatch: pytest.MonkeyPatch) -> set[int]:
    """The TCP ports the container's process listens on, reachable from the pod IP."""
    if runs_catstream(container):
        args = parse_catstream_args(container.get("args", []))
        if args.command not in ("worker", "sink"):
            return set()
        settings = settings_from(container_env(objects, container), monkeypatch)
        if settings.api_host not in ALL_INTERFACES:
            return set()  # bound to an address the kubelet cannot reach
        # every worker and sink process serves /metrics (catstream/metrics_endpoint.py);
        # port 0 is a free one, which nothing outside can know
        metrics = {settings.metrics_port} - {0}
        return metrics | (
            {settings.worker_web_port} if args.command == "worker" and args.api else set()
        )
    if container.get("command") == ["tritonserver"]:
        ports = dict(TRITON_PORT_FLAGS)
        for arg in container.get("args", []):
            flag, _, value = arg.partition("=")
            if flag in ports:
                ports[flag] = int(value)
        return set(ports.values())
    raise AssertionError(f"container {container['name']!r}: unknown program {container}")


def port_number(container: Obj, port: int | str) -> int:
    if isinstance(port, int):
        return port
    named = {p["name"]: p["containerPort"] for p in container.get("ports", []) if "name" in p}
    assert port in named, f"container {container['name']!r} has no port named {port!r}"
    return int(named[port])


def probe_port(probe: Obj) -> int | str:
    for kind in ("httpGet", "tcpSocket", "grpc"):
        if kind in probe:
            return probe[kind]["port"]
    raise AssertionError(f"probe {probe} has no port (exec probes are not used)")


# ------------------------------------------------------------------------- tests


def test_the_production_kustomization_renders(objects: list[Obj]) -> None:
    kinds = {(o["kind"], o["metadata"]["name"]) for o in objects}
    assert ("Deployment", "catstream-api") in kinds
    assert ("StatefulSet", "catstream-worker") in kinds
    assert all(
        o["metadata"].get("namespace") == "catstream" for o in objects if o["kind"] != "Namespace"
    )
    assert any(runs_catstream(c) for _, c in workloads(objects)), "images were not rewritten"


def test_every_catstream_container_has_args_the_cli_accepts(objects: list[Obj]) -> None:
    checked = 0
    for obj, container in workloads(objects):
        if runs_catstream(container):
            args = parse_catstream_args(container.get("args", []))
            assert getattr(args, "handler", None), f"{obj['metadata']['name']}: incomplete command"
            checked += 1
    assert checked >= 3


def test_every_env_var_is_a_settings_field(
    objects: list[Obj], monkeypatch: pytest.MonkeyPatch
) -> None:
    fields = {f"CATSTREAM_{name.upper()}" for name in Settings.model_fields}
    for obj, container in workloads(objects):
        env = container_env(objects, container)
        where = f"{obj['metadata']['name']}/{container['name']}"
        unknown = {name for name in env if name not in fields | THIRD_PARTY_ENV.keys()}
        assert not unknown, f"{where}: {sorted(unknown)} are no Settings field (typo?)"
        if runs_catstream(container):
            settings_from(env, monkeypatch)  # the values validate, too


def test_every_probe_port_is_one_the_process_binds(
    objects: list[Obj], monkeypatch: pytest.MonkeyPatch
) -> None:
    probed = 0
    for obj, container in workloads(objects):
        bound = bound_ports(objects, container, monkeypatch)
        where = f"{obj['metadata']['name']}/{container['name']}"
        for probe_name in PROBES:
            if probe_name in container:
                port = port_number(container, probe_port(container[probe_name]))
                assert port in bound, f"{where} {probe_name} on {port}; the process binds {bound}"
                probed += 1
        scrape = (
            obj["spec"]["template"]["metadata"].get("annotations", {}).get("prometheus.io/port")
        )
        if scrape is not None:
            assert any(
                int(scrape) in bound_ports(objects, c, monkeypatch) for c in pod_containers(obj)
            ), f"{obj['metadata']['name']}: Prometheus scrapes {scrape}, nothing binds it"
    assert probed >= 4


def test_every_worker_and_sink_container_exposes_its_metrics(
    objects: list[Obj], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The agents' and sinks' counters live in their own processes: each must be scrapeable."""
    checked = 0
    for obj, container in workloads(objects):
        if not runs_catstream(container):
            continue
        args = parse_catstream_args(container.get("args", []))
        if args.command not in ("worker", "sink"):
            continue
        where = f"{obj['metadata']['name']}/{container['name']}"
        settings = settings_from(container_env(objects, container), monkeypatch)
        port = port_number(container, "metrics")
        assert port == settings.metrics_port, (
            f"{where}: port 'metrics' is not CATSTREAM_METRICS_PORT"
        )
        assert port in bound_ports(objects, container, monkeypatch), f"{where}: metrics unreachable"
        checked += 1
    assert checked >= 4  # worker, API, two sinks


def test_every_service_targets_a_bound_port(
    objects: list[Obj], monkeypatch: pytest.MonkeyPatch
) -> None:
    for service in (o for o in objects if o["kind"] == "Service"):
        if service["spec"].get("clusterIP") == "None":
            continue  # headless: gives StatefulSet pods stable names, carries no traffic
        selector = service["spec"]["selector"]
        pods = [
            o
            for o in objects
            if pod_containers(o)
            and selector.items() <= o["spec"]["template"]["metadata"]["labels"].items()
        ]
        assert pods, f"Service {service['metadata']['name']} selects no workload"
        for port in service["spec"]["ports"]:
            target = port.get("targetPort", port["port"])
            assert any(
                port_number(c, target) in bound_ports(objects, c, monkeypatch)
                for pod in pods
                for c in pod_containers(pod)
                if isinstance(target, int) or target in {p.get("name") for p in c.get("ports", [])}
            ), f"Service {service['metadata']['name']} port {target}: nothing binds it"


# ------------------------------------------------------- the renderer itself


def write(directory: Path, name: str, text: str) -> None:
    (directory / name).write_text(text)


DEPLOYMENT = """
apiVersion: apps/v1
kind: Deployment
metadata: {name: app}
spec:
  template:
    metadata: {labels: {app: a}}
    spec:
      containers:
        - name: main
          image: catstream
          args: ["worker"]
          envFrom: [{configMapRef: {name: settings}}]
          env: [{name: A, value: "1"}]
"""


def test_generators_patches_and_images_are_applied(tmp_path: Path) -> None:
    write(tmp_path, "app.yaml", DEPLOYMENT)
    write(
        tmp_path,
        "patch.yaml",
        """
apiVersion: apps/v1
kind: Deployment
metadata: {name: app}
spec:
  template:
    spec:
      containers:
        - name: main
          env: [{name: B, value: "2"}]
""",
    )
    write(
        tmp_path,
        "kustomization.yaml",
        """
namespace: ns
resources: [app.yaml]
images: [{name: catstream, newName: reg/cat, newTag: "9"}]
configMapGenerator: [{name: settings, literals: ["CATSTREAM_APP_ID=x"]}]
patches: [{path: patch.yaml}]
""",
    )
    objects = render(tmp_path)
    app = next(o for o in objects if o["kind"] == "Deployment")
    (container,) = pod_containers(app)
    assert container["image"] == "reg/cat:9"
    assert [e["name"] for e in container["env"]] == ["A", "B"]
    config_map = next(o for o in objects if o["kind"] == "ConfigMap")
    assert config_map["data"] == {"CATSTREAM_APP_ID": "x"}
    assert config_map["metadata"]["name"].startswith("settings-")
    assert container["envFrom"][0]["configMapRef"]["name"] == config_map["metadata"]["name"]
    assert {o["metadata"]["namespace"] for o in objects} == {"ns"}


def test_fields_the_renderer_does_not_know_are_refused(tmp_path: Path) -> None:
    write(tmp_path, "app.yaml", DEPLOYMENT)
    write(tmp_path, "kustomization.yaml", "resources: [app.yaml]\nreplacements: []\n")
    with pytest.raises(KustomizeError, match="replacements"):
        render(tmp_path)
