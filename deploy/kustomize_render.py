"""``kustomize build`` for the features ``deploy/production`` uses, in Python.

No cluster and no kustomize binary needed: ``render(directory)`` reads
``kustomization.yaml`` and returns the objects ``kubectl apply -k`` would send.
Supported fields: ``resources`` (files and directories with their own
kustomization), ``namespace``, ``images``, ``configMapGenerator`` /
``secretGenerator`` (``literals``, ``envs``, ``files``; with kustomize's name
hash suffix unless ``generatorOptions.disableNameSuffixHash``, and references
in pod templates rewritten to the suffixed name), ``patches`` and
``patchesStrategicMerge`` (strategic-merge patches from a ``path`` or inline
``patch``, matched by kind and name or a ``target``; lists of named items such
as containers and env merge by ``name``). Any other field is refused by name,
so the contract test fails loudly instead of checking something kubectl would
not deploy.
"""

from __future__ import annotations

import base64
import copy
import hashlib
import json
from pathlib import Path
from typing import Any

import yaml

Obj = dict[str, Any]

SUPPORTED = {
    "apiVersion",
    "kind",
    "resources",
    "namespace",
    "images",
    "configMapGenerator",
    "secretGenerator",
    "generatorOptions",
    "patches",
    "patchesStrategicMerge",
}
# Cluster-scoped kinds keep no namespace.
CLUSTER_SCOPED = {"Namespace", "ClusterRole", "ClusterRoleBinding", "CustomResourceDefinition"}
POD_TEMPLATE_KINDS = {"Deployment", "StatefulSet", "DaemonSet", "Job", "ReplicaSet"}


class KustomizeError(ValueError):
    """A kustomization this renderer cannot build faithfully."""


def render(directory: Path) -> list[Obj]:
    """The objects ``kustomize build directory`` would output."""
    kustomization = _load_kustomization(directory)
    unsupported = set(kustomization) - SUPPORTED
    if unsupported:
        raise KustomizeError(
            f"{directory}/kustomization.yaml uses {', '.join(sorted(unsupported))}: "
            "teach deploy/kustomize_render.py those fields (or run real kustomize)"
        )
    objects: list[Obj] = []
    for resource in kustomization.get("resources", []):
        path = directory / resource
        objects += render(path) if path.is_dir() else _load_documents(path)
    renames: dict[tuple[str, str], str] = {}
    options = kustomization.get("generatorOptions") or {}
    for kind, field in (("ConfigMap", "configMapGenerator"), ("Secret", "secretGenerator")):
        for spec in kustomization.get(field, []):
            generated = _generate(directory, kind, spec, options)
            renames[(kind, spec["name"])] = generated["metadata"]["name"]
            objects.append(generated)
    for patch in _patches(directory, kustomization):
        _apply_patch(objects, patch)
    namespace = kustomization.get("namespace")
    for obj in objects:
        if namespace and obj.get("kind") not in CLUSTER_SCOPED:
            obj.setdefault("metadata", {})["namespace"] = namespace
        for container in pod_containers(obj):
            _set_image(container, kustomization.get("images", []))
        _rename_references(obj, renames)
    return objects


def pod_containers(obj: Obj) -> list[Obj]:
    """The containers (init containers included) of a workload's pod template."""
    if obj.get("kind") not in POD_TEMPLATE_KINDS:
        return []
    pod = obj.get("spec", {}).get("template", {}).get("spec", {})
    return [*pod.get("initContainers", []), *pod.get("containers", [])]


def _load_kustomization(directory: Path) -> Obj:
    for name in ("kustomization.yaml", "kustomization.yml", "Kustomization"):
        path = directory / name
        if path.exists():
            loaded = yaml.safe_load(path.read_text()) or {}
            if not isinstance(loaded, dict):
                raise KustomizeError(f"{path} is not a mapping")
            return loaded
    raise KustomizeError(f"no kustomization.yaml in {directory}")


def _load_documents(path: Path) -> list[Obj]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc]


def _generate(directory: Path, kind: str, spec: Obj, options: Obj) -> Obj:
    data: dict[str, str] = {}
    for literal in spec.get("literals", []):
        key, _, value = str(literal).partition("=")
        data[key] = value
    for env_file in spec.get("envs", []):
        for line in (directory / env_file).read_text().splitlines():
            line = line.strip()
            if line and not line.startswith("#"):
                key, _, value = line.partition("=")
                data[key] = value
    for item in spec.get("files", []):
        key, sep, file_name = str(item).partition("=")
        path = directory / (file_name if sep else key)
        data[key if sep else path.name] = path.read_text()
    unknown = set(spec) - {"name", "literals", "envs", "files", "behavior", "options", "type"}
    if unknown or spec.get("behavior", "create") != "create":
        raise KustomizeError(f"{kind} generator {spec.get('name')!r}: unsupported {unknown}")
    merged = {**options, **(spec.get("options") or {})}
    obj: Obj = {"apiVersion": "v1", "kind": kind, "metadata": {"name": spec["name"]}}
    if kind == "Secret":
        obj["type"] = spec.get("type", "Opaque")
        obj["data"] = {k: base64.b64encode(v.encode()).decode() for k, v in data.items()}
    else:
        obj["data"] = data
    if merged.get("labels"):
        obj["metadata"]["labels"] = dict(merged["labels"])
    if not merged.get("disableNameSuffixHash"):
        digest = hashlib.sha256(json.dumps(obj, sort_keys=True).encode()).hexdigest()
        obj["metadata"]["name"] = f"{spec['name']}-{digest[:10]}"
    return obj


def _patches(directory: Path, kustomization: Obj) -> list[tuple[Obj, Obj | None]]:
    """(patch body, target selector or None) in the order kustomize applies them."""
    found: list[tuple[Obj, Obj | None]] = []
    for entry in kustomization.get("patchesStrategicMerge", []):
        found += [(doc, None) for doc in _load_documents(directory / entry)]
    for entry in kustomization.get("patches", []):
        text = (directory / entry["path"]).read_text() if "path" in entry else entry["patch"]
        docs = [doc for doc in yaml.safe_load_all(text) if doc]
        if any(isinstance(doc, list) for doc in docs):
            raise KustomizeError("JSON 6902 patches are not supported: use strategic merge")
        found += [(doc, entry.get("target")) for doc in docs]
    return found


def _apply_patch(objects: list[Obj], patch_target: tuple[Obj, Obj | None]) -> None:
    patch, target = patch_target
    selector = target or {"kind": patch.get("kind"), "name": patch.get("metadata", {}).get("name")}
    matched = [obj for obj in objects if _selected(obj, selector)]
    if not matched:
        raise KustomizeError(f"patch for {selector} matches no resource")
    for obj in matched:
        body = copy.deepcopy(patch)
        if target:  # a targeted patch may name any object: keep the target's identity
            body.pop("metadata", None)
        _merge(obj, body)


def _selected(obj: Obj, selector: Obj) -> bool:
    if selector.get("kind") and obj.get("kind") != selector["kind"]:
        return False
    if selector.get("name") and obj.get("metadata", {}).get("name") != selector["name"]:
        return False
    labels = obj.get("metadata", {}).get("labels", {})
    wanted = selector.get("labelSelector")
    if wanted:
        pairs = dict(p.split("=", 1) for p in str(wanted).split(","))
        return all(labels.get(k) == v for k, v in pairs.items())
    return True


def _merge(base: Obj, patch: Obj) -> None:
    """Strategic merge: maps merge, named lists merge by name, other lists are replaced."""
    for key, value in patch.items():
        if value is None:
            base.pop(key, None)
        elif isinstance(value, dict) and isinstance(base.get(key), dict):
            _merge(base[key], value)
        elif isinstance(value, list) and isinstance(base.get(key), list) and _named(value):
            by_name = {item.get("name"): item for item in base[key] if isinstance(item, dict)}
            for item in value:
                if item["name"] in by_name:
                    _merge(by_name[item["name"]], item)
                else:
                    base[key].append(copy.deepcopy(item))
        else:
            base[key] = copy.deepcopy(value)


def _named(items: list[Any]) -> bool:
    return all(isinstance(item, dict) and "name" in item for item in items)


def _set_image(container: Obj, images: list[Obj]) -> None:
    name, _, tag = str(container.get("image", "")).partition(":")
    for image in images:
        if image.get("name") == name:
            new_name = image.get("newName", name)
            new_tag = image.get("newTag", tag)
            digest = image.get("digest")
            container["image"] = (
                f"{new_name}@{digest}"
                if digest
                else f"{new_name}:{new_tag}"
                if new_tag
                else new_name
            )


def _rename_references(obj: Obj, renames: dict[tuple[str, str], str]) -> None:
    """Point pod templates at generated ConfigMaps/Secrets under their suffixed names."""
    if not renames:
        return
    spec = obj.get("spec", {}).get("template", {}).get("spec", {})
    for container in pod_containers(obj):
        for source in container.get("envFrom", []):
            for kind, field in (("ConfigMap", "configMapRef"), ("Secret", "secretRef")):
                ref = source.get(field)
                if ref and (kind, ref.get("name")) in renames:
                    ref["name"] = renames[(kind, ref["name"])]
        for env in container.get("env", []):
            value_from = env.get("valueFrom", {})
            for kind, field in (("ConfigMap", "configMapKeyRef"), ("Secret", "secretKeyRef")):
                ref = value_from.get(field)
                if ref and (kind, ref.get("name")) in renames:
                    ref["name"] = renames[(kind, ref["name"])]
    for volume in spec.get("volumes", []):
        if "configMap" in volume and ("ConfigMap", volume["configMap"].get("name")) in renames:
            volume["configMap"]["name"] = renames[("ConfigMap", volume["configMap"]["name"])]
        if "secret" in volume and ("Secret", volume["secret"].get("secretName")) in renames:
            volume["secret"]["secretName"] = renames[("Secret", volume["secret"]["secretName"])]
