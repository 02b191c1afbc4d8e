"""Which categoriser version the worker is serving with, and its metadata.

The worker pins every categoriser call to the version whose metadata (label
map, thresholds) it holds. It looks for a newly served version (after
``catstream train`` or ``catstream model rollback``) at most every
``refresh_s`` seconds, so a model change needs no worker restart.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from catstream.errors import RecoverableError
from catstream.logs import get_logger
from catstream.settings import Settings
from catstream.taxonomy import Taxonomy
from triton_models.categoriser.metadata import (
    ModelMetadata,
    ModelVersionError,
    load_metadata,
    served_version,
    version_taxonomy,
)

log = get_logger(__name__)


@dataclass
class ModelState:
    settings: Settings
    refresh_s: float = 30.0
    metadata: ModelMetadata | None = None
    _checked_at: float = field(default=0.0)
    # version -> the taxonomy it carries (None: an older export without its own copy)
    _taxonomies: dict[int, Taxonomy | None] = field(default_factory=dict)

    def taxonomy_for(self, metadata: ModelMetadata) -> Taxonomy | None:
        """The tree ``metadata``'s category ids come from: the version's own copy.

        Keyed by version, so a batch scored with one version is described with that
        version's tree even when a newer version is picked up meanwhile.
        """
        if metadata.version not in self._taxonomies:
            try:
                taxonomy: Taxonomy | None = version_taxonomy(
                    self.settings.model_repository, metadata, name=self.settings.categoriser_model
                )
            except ModelVersionError:
                taxonomy = None
            # Keep the served version and the one before it (batches still in flight).
            for old in sorted(self._taxonomies)[:-1]:
                del self._taxonomies[old]
            self._taxonomies[metadata.version] = taxonomy
        return self._taxonomies[metadata.version]

    def current(self) -> ModelMetadata:
        """Metadata of the served version; RecoverableError while there is none yet."""
        now = time.monotonic()
        if self.metadata is None or now - self._checked_at >= self.refresh_s:
            self._checked_at = now
            self._refresh()
        if self.metadata is None:
            raise RecoverableError(
                "categoriser",
                "no trained categoriser version in "
                f"{self.settings.model_repository}; run `catstream train` (the worker waits)",
            )
        return self.metadata

    def _refresh(self) -> None:
        repository = self.settings.model_repository
        try:
            version = served_version(repository, self.settings.categoriser_model)
            if self.metadata is not None and self.metadata.version == version:
                return
            self.metadata = load_metadata(repository, version, self.settings.categoriser_model)
            log.info("categoriser_version_loaded", version=version)
        except ModelVersionError as exc:
            log.warning("categoriser_version_unavailable", error=str(exc))
