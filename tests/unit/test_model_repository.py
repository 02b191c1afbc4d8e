"""The stack's working copy of the model repository keeps trained versions and policies."""

from __future__ import annotations

from pathlib import Path

from deploy.model_repository import sync_model_repository


def _source(root: Path) -> Path:
    (root / "categoriser" / "configs").mkdir(parents=True)
    (root / "categoriser" / "config.pbtxt").write_text(
        'name: "categoriser"\nversion_policy: { latest: { num_versions: 2 } }\nmax_batch_size: 64\n'
    )
    (root / "text_encoder" / "1").mkdir(parents=True)
    (root / "text_encoder" / "1" / "model.py").write_text("VERSION = 1\n")
    return root


def test_first_sync_copies_everything(tmp_path: Path) -> None:
    source = _source(tmp_path / "src")
    target = sync_model_repository(tmp_path / "served", source)
    assert (target / "text_encoder" / "1" / "model.py").read_text() == "VERSION = 1\n"
    assert "latest" in (target / "categoriser" / "config.pbtxt").read_text()


def test_resync_updates_code_but_keeps_versions_and_policy(tmp_path: Path) -> None:
    source = _source(tmp_path / "src")
    target = sync_model_repository(tmp_path / "served", source)
    config = target / "categoriser" / "config.pbtxt"
    config.write_text(
        config.read_text().replace(
            "version_policy: { latest: { num_versions: 2 } }",
            "version_policy: { specific: { versions: [ 3, 4 ] } }",
        )
    )
    (target / "categoriser" / "4").mkdir()
    (target / "categoriser" / "4" / "network.pt").write_bytes(b"weights")
    (source / "text_encoder" / "1" / "model.py").write_text("VERSION = 2\n")
    config_text = (source / "categoriser" / "config.pbtxt").read_text()
    (source / "categoriser" / "config.pbtxt").write_text(config_text.replace("64", "256"))

    sync_model_repository(target, source)

    assert (target / "text_encoder" / "1" / "model.py").read_text() == "VERSION = 2\n"
    text = config.read_text()
    assert "specific: { versions: [ 3, 4 ] }" in text
    assert "max_batch_size: 256" in text
    assert (target / "categoriser" / "4" / "network.pt").read_bytes() == b"weights"


def test_a_repository_chosen_on_purpose_is_served_as_it_is(tmp_path: Path) -> None:
    source = _source(tmp_path / "src")
    chosen = tmp_path / "production"
    (chosen / "only_model").mkdir(parents=True)
    assert sync_model_repository(chosen, source) == chosen
    assert sorted(p.name for p in chosen.iterdir()) == ["only_model"]
