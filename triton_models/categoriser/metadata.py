"""Model versions on disk: metadata, the served version, the version directory layout.

A version lives in ``<model_repository>/categoriser/<N>/``:

- ``model.py``: the Triton python-backend entry point (a copy of
  ``triton_models/categoriser/triton_model.py``);
- ``network.pt``: the TorchScript Wide & Deep network;
- ``metadata.json``: everything needed to turn logits into decisions (label map,
  leaf set, temperatures, head mix, thresholds) plus provenance (taxonomy hash,
  training-data hash, hyperparameters, metrics, created_at);
- ``train.jsonl``: the rows the model learned from, so baselines can be refitted
  on exactly the same data;
- ``features.json`` (linear models): the TF-IDF vocabularies and idf;
- ``taxonomy.txt``: the taxonomy the model was trained on (``ID - A > B`` lines), so
  prediction and evaluation need no ``--taxonomy``.

The *served* version is what the model's ``config.pbtxt`` version policy names
(``specific``: the highest listed; ``latest``: the highest on disk).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from catstream.taxonomy import Taxonomy, TaxonomyError
from triton_models.categoriser.hierarchy import LabelSpace
from triton_models.categoriser.scoring import ScoringParams

MODEL_NAME = "categoriser"
METADATA_FILE = "metadata.json"
NETWORK_FILE = "network.pt"
TRAIN_ROWS_FILE = "train.jsonl"
TAXONOMY_FILE = "taxonomy.txt"
FEATURES_FILE = "features.json"  # TF-IDF vocabularies and idf of a linear model
METADATA_FORMAT = 1
_SPECIFIC = re.compile(r"version_policy\s*:\s*\{\s*specific\s*:\s*\{\s*versions\s*:\s*\[([^\]]*)\]")


class ModelVersionError(LookupError):
    """A model version is missing or unreadable; the message says what to run."""


@dataclass(frozen=True)
class ModelMetadata:
    version: int
    space: LabelSpace
    scoring: ScoringParams
    network: dict[str, Any]
    raw: dict[str, Any]

    @property
    def taxonomy_hash(self) -> str:
        return str(self.raw.get("taxonomy_hash", ""))

    @property
    def label_ids(self) -> list[int]:
        return self.space.label_ids

    @classmethod
    def from_dict(cls, data: dict[str, Any], version: int) -> ModelMetadata:
        if int(data.get("format", 0)) != METADATA_FORMAT:
            raise ModelVersionError(
                f"categoriser version {version}: metadata format {data.get('format')} is not "
                f"{METADATA_FORMAT}; retrain with this catstream (`catstream train`)"
            )
        return cls(
            version=version,
            space=LabelSpace.from_dict(data),
            scoring=ScoringParams.from_dict(data["scoring"]),
            network=dict(data["network"]),
            raw=data,
        )


def model_dir(model_repository: Path, name: str = MODEL_NAME) -> Path:
    return Path(model_repository) / name


def version_dirs(model_repository: Path, name: str = MODEL_NAME) -> dict[int, Path]:
    """Numbered version directories that hold a metadata file, by version."""
    root = model_dir(model_repository, name)
    if not root.is_dir():
        return {}
    return {
        int(child.name): child
        for child in root.iterdir()
        if child.is_dir() and child.name.isdigit() and (child / METADATA_FILE).is_file()
    }


def configured_versions(config_text: str) -> list[int] | None:
    """Versions of a ``specific`` version policy, or None for ``latest``/``all``."""
    match = _SPECIFIC.search(config_text)
    if match is None:
        return None
    return sorted(int(v) for v in re.findall(r"\d+", match.group(1)))


def served_version(model_repository: Path, name: str = MODEL_NAME) -> int:
    """The version Triton answers for when no version is asked for."""
    versions = version_dirs(model_repository, name)
    if not versions:
        raise ModelVersionError(
            f"no categoriser versions in {model_dir(model_repository, name)}; "
            "train one with `catstream train --taxonomy T --labels L`"
        )
    config = model_dir(model_repository, name) / "config.pbtxt"
    listed = configured_versions(config.read_text()) if config.is_file() else None
    if listed:
        present = [v for v in listed if v in versions]
        if present:
            return max(present)
    return max(versions)


def read_metadata(version_dir: Path) -> ModelMetadata:
    path = version_dir / METADATA_FILE
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ModelVersionError(
            f"{path} not found; the version is incomplete, re-export it with `catstream train`"
        ) from None
    except json.JSONDecodeError as exc:
        raise ModelVersionError(f"{path}: not valid JSON ({exc}); re-export the version") from None
    return ModelMetadata.from_dict(data, int(version_dir.name))


def load_metadata(
    model_repository: Path, version: int | str | None = None, name: str = MODEL_NAME
) -> ModelMetadata:
    """Metadata of ``version``, or of the served version when None (or "")."""
    number = served_version(model_repository, name) if version in (None, "") else int(str(version))
    directory = model_dir(model_repository, name) / str(number)
    if not directory.is_dir():
        known = sorted(version_dirs(model_repository, name))
        raise ModelVersionError(
            f"categoriser version {number} not found in {model_dir(model_repository, name)} "
            f"(versions: {known or 'none'}); see `catstream model list`"
        )
    return read_metadata(directory)


def taxonomy_lines(taxonomy: Taxonomy) -> str:
    """The taxonomy as ``ID - A > B`` lines, parents first: it reloads with the same hash."""
    return "".join(f"{c} - {taxonomy.path_str(c)}\n" for c in taxonomy.ids)


def version_taxonomy(
    model_repository: Path,
    metadata: ModelMetadata,
    override: Path | None = None,
    name: str = MODEL_NAME,
) -> Taxonomy:
    """The taxonomy a version was trained on: its own copy, or ``override`` when it matches.

    Raises ``TaxonomyError`` when ``override`` is another taxonomy, and
    ``ModelVersionError`` when the version carries no copy and none is given.
    """
    if override is not None:
        taxonomy = Taxonomy.load(override)
        if taxonomy.hash != metadata.taxonomy_hash:
            raise TaxonomyError(
                f"{override}: not the taxonomy categoriser version {metadata.version} was "
                "trained on (hash differs); leave out --taxonomy to use the version's own copy"
            )
        return taxonomy
    path = model_dir(model_repository, name) / str(metadata.version) / TAXONOMY_FILE
    if not path.is_file():
        raise ModelVersionError(
            f"categoriser version {metadata.version} carries no {TAXONOMY_FILE} (exported by an "
            "older catstream); pass its taxonomy with --taxonomy, or retrain it"
        )
    taxonomy = Taxonomy.load(path)
    if taxonomy.hash != metadata.taxonomy_hash:
        raise ModelVersionError(
            f"{path}: does not match the version's taxonomy hash; the version is damaged, "
            "re-export it with `catstream train`"
        )
    return taxonomy
