"""Which categoriser versions Triton serves: version policy, load, rollback.

Triton runs with ``--model-control-mode=explicit``. Serving versions ``[new, previous]``
keeps the previous one loaded, so a rollback is instant; requests that name no
version go to the highest loaded one (the *served* version). The policy is
written into the model's config files too (``config.pbtxt`` and ``configs/*.pbtxt``),
so a restarted Triton serves the same versions, and is passed as a config
override on ``load_model`` so the running Triton switches without a restart.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from catstream.logs import get_logger
from catstream.settings import Settings
from triton_models.categoriser.metadata import (
    MODEL_NAME,
    ModelVersionError,
    configured_versions,
    model_dir,
    version_dirs,
)

log = get_logger(__name__)

_POLICY_LINE = re.compile(r"^version_policy\s*:.*$", re.MULTILINE)
_MAX_BATCH_LINE = re.compile(r"^max_batch_size\s*:.*$", re.MULTILINE)


def policy_line(versions: list[int]) -> str:
    listed = ", ".join(str(v) for v in sorted(set(versions), reverse=True))
    return f"version_policy: {{ specific: {{ versions: [ {listed} ] }} }}"


def config_files(model_repository: Path, name: str = MODEL_NAME) -> list[Path]:
    root = model_dir(model_repository, name)
    files = [root / "config.pbtxt"]
    if (root / "configs").is_dir():
        files.extend(sorted((root / "configs").glob("*.pbtxt")))
    return [f for f in files if f.is_file()]


def write_version_policy(
    model_repository: Path,
    versions: list[int],
    name: str = MODEL_NAME,
    config_name: str | None = None,
) -> None:
    """Rewrite ``version_policy`` in ``config.pbtxt`` and in the active ``configs/<config_name>``.

    Other files of the model directory are left alone, and a file whose policy is
    already right is not rewritten: Triton (2.51) reloads *every* loaded version on
    the next ``load_model`` when any other file of the model directory changed
    (``configs/gpu.pbtxt`` rewritten on a CPU stack made each promotion reload the
    champion beside the challenger). ``config.pbtxt`` itself is not such a file.
    """
    line = policy_line(versions)
    paths = [model_dir(model_repository, name) / "config.pbtxt"]
    if config_name:
        paths.append(model_dir(model_repository, name) / "configs" / f"{config_name}.pbtxt")
    for path in paths:
        if not path.is_file():
            continue
        before = path.read_text(encoding="utf-8")
        if _POLICY_LINE.search(before):
            text = _POLICY_LINE.sub(line, before, count=1)
        else:
            text = _MAX_BATCH_LINE.sub(lambda m: f"{m.group(0)}\n{line}", before, count=1)
        if text != before:
            path.write_text(text, encoding="utf-8")


def serving_versions(model_repository: Path, name: str = MODEL_NAME) -> list[int]:
    """Versions the config makes Triton load (``latest: 2`` when no specific list)."""
    on_disk = sorted(version_dirs(model_repository, name))
    config = model_dir(model_repository, name) / "config.pbtxt"
    listed = configured_versions(config.read_text()) if config.is_file() else None
    if listed is None:
        return on_disk[-2:]
    return [v for v in listed if v in on_disk]


def config_override(model_repository: Path, config_name: str | None, name: str = MODEL_NAME) -> str:
    """The model config as Triton's JSON, read from ``config.pbtxt`` or ``configs/<name>.pbtxt``."""
    from google.protobuf import json_format, text_format
    from tritonclient.grpc import model_config_pb2

    root = model_dir(model_repository, name)
    path = root / "config.pbtxt" if not config_name else root / "configs" / f"{config_name}.pbtxt"
    if not path.is_file():
        raise ModelVersionError(f"{path} not found; pass an existing --config-name")
    message = text_format.Parse(path.read_text(encoding="utf-8"), model_config_pb2.ModelConfig())
    json_text: str = json_format.MessageToJson(message, preserving_proto_field_name=True)
    return json_text


def _client(settings: Settings) -> Any:
    import tritonclient.http as httpclient

    url = settings.triton_http_url.removeprefix("http://").removeprefix("https://")
    return httpclient.InferenceServerClient(
        url=url,
        ssl=settings.triton_http_url.startswith("https://"),
        network_timeout=max(settings.triton_timeout_s, 300.0),  # loading takes a while
        connection_timeout=settings.triton_timeout_s,
    )


def load_versions(
    settings: Settings,
    versions: list[int],
    config_name: str | None = None,
    name: str = MODEL_NAME,
) -> None:
    """Serve exactly ``versions`` (highest = served): write the policy, load into Triton."""
    repository = Path(settings.model_repository)
    on_disk = version_dirs(repository, name)
    missing = [v for v in versions if v not in on_disk]
    if missing or not versions:
        raise ModelVersionError(
            f"categoriser versions {missing or versions} are not in {model_dir(repository, name)} "
            f"(versions: {sorted(on_disk) or 'none'}); see `catstream model list`"
        )
    write_version_policy(repository, versions, name, config_name)
    override = config_override(repository, config_name, name)
    client = _client(settings)
    try:
        client.load_model(name, config=override)
    except Exception as exc:  # tritonclient raises its own InferenceServerException
        raise RuntimeError(
            f"Triton at {settings.triton_http_url} could not load {name} versions {versions}: "
            f"{exc}; check the server log, and that Triton runs with "
            "--model-control-mode=explicit"
        ) from exc
    finally:
        client.close()
    log.info("model_loaded", model=name, versions=sorted(versions), served=max(versions))


def promote(settings: Settings, version: int, name: str = MODEL_NAME) -> list[int]:
    """Serve ``version`` and keep the version served before it loadable."""
    repository = Path(settings.model_repository)
    current = serving_versions(repository, name)
    previous = [v for v in current if v != version]
    versions = [version, *(previous[-1:] if previous else [])]
    return versions


def rollback_versions(model_repository: Path, name: str = MODEL_NAME) -> list[int]:
    """The versions to serve after a rollback: the one below the served version."""
    on_disk = sorted(version_dirs(model_repository, name))
    current = serving_versions(model_repository, name)
    if not current:
        raise ModelVersionError("no categoriser version is served; nothing to roll back")
    served = max(current)
    older = [v for v in on_disk if v < served]
    if not older:
        raise ModelVersionError(
            f"version {served} is the oldest on disk; there is nothing to roll back to"
        )
    return [older[-1]]


def triton_model_state(settings: Settings, name: str = MODEL_NAME) -> dict[int, str]:
    """Version → state (READY, UNAVAILABLE, …) as the running Triton reports it."""
    client = _client(settings)
    try:
        index = client.get_model_repository_index()
    finally:
        client.close()
    return {
        int(item["version"]): str(item.get("state", ""))
        for item in index
        if item.get("name") == name and str(item.get("version", "")).isdigit()
    }
