"""Settings: environment overrides, stack.env precedence, topic names, secrets kept secret."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import SecretStr, ValidationError

from catstream.settings import TOPIC_KEYS, Settings, load_settings, stack_env_file

URL_VARS = (
    "CATSTREAM_KAFKA_BOOTSTRAP",
    "CATSTREAM_ELASTICSEARCH_URL",
    "CATSTREAM_TRITON_GRPC_URL",
    "CATSTREAM_TRITON_HTTP_URL",
    "CATSTREAM_MILVUS_URI",
)
SECRET = "s3cr3t-do-not-print"


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """An empty CATSTREAM_HOME and no URL variables (restored afterwards, even the
    ones ``load_settings`` copies from stack.env into the environment)."""
    for name in URL_VARS:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("CATSTREAM_HOME", str(tmp_path))
    return tmp_path


def test_defaults_point_at_the_local_stack(clean_env: Path) -> None:
    settings = Settings()
    assert settings.kafka_bootstrap.startswith("127.0.0.1:")
    assert settings.home == clean_env
    assert stack_env_file() == clean_env / "stack.env"


def test_environment_variable_overrides_default(
    clean_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CATSTREAM_KAFKA_BOOTSTRAP", "kafka.prod:9093")
    monkeypatch.setenv("CATSTREAM_TOPIC_PARTITIONS", "12")
    settings = Settings()
    assert settings.kafka_bootstrap == "kafka.prod:9093"
    assert settings.topic_partitions == 12


def test_stack_env_is_read_when_nothing_is_exported(clean_env: Path) -> None:
    (clean_env / "stack.env").write_text(
        "# comment\nCATSTREAM_KAFKA_BOOTSTRAP=127.0.0.1:40001\n\n"
        "CATSTREAM_MILVUS_URI = http://127.0.0.1:40002\n"
    )
    settings = load_settings()
    assert settings.kafka_bootstrap == "127.0.0.1:40001"
    assert settings.milvus_uri == "http://127.0.0.1:40002"


def test_exported_variable_beats_stack_env(
    clean_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (clean_env / "stack.env").write_text("CATSTREAM_KAFKA_BOOTSTRAP=127.0.0.1:40001\n")
    monkeypatch.setenv("CATSTREAM_KAFKA_BOOTSTRAP", "kafka.prod:9093")
    assert load_settings().kafka_bootstrap == "kafka.prod:9093"


def test_explicit_override_beats_environment(
    clean_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CATSTREAM_KAFKA_BOOTSTRAP", "kafka.prod:9093")
    assert load_settings(kafka_bootstrap="other:1").kafka_bootstrap == "other:1"


def test_missing_stack_env_falls_back_to_defaults(clean_env: Path) -> None:
    assert load_settings().triton_grpc_url == Settings.model_fields["triton_grpc_url"].default


def test_topic_prefix_is_prepended_to_every_topic(clean_env: Path) -> None:
    settings = Settings(topic_prefix="staging.")
    assert settings.topic("raw") == "staging.products.raw"
    assert settings.all_topics() == [f"staging.products.{key}" for key in TOPIC_KEYS]
    assert Settings().topic("deadletter") == "products.deadletter"


def test_unknown_topic_key_names_the_valid_ones(clean_env: Path) -> None:
    with pytest.raises(KeyError, match="raw"):
        Settings().topic("nope")


def test_settings_are_frozen_and_copied_with_updates(clean_env: Path) -> None:
    settings = Settings()
    with pytest.raises(ValidationError):
        settings.topic_prefix = "x."
    copy = settings.model_copy(update={"topic_prefix": "x."})
    assert copy.topic("raw") == "x.products.raw"
    assert settings.topic("raw") == "products.raw"


def test_secrets_never_appear_in_repr_str_or_dump(
    clean_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CATSTREAM_KAFKA_SASL_PASSWORD", SECRET)
    monkeypatch.setenv("CATSTREAM_ELASTICSEARCH_API_KEY", SECRET)
    settings = Settings(elasticsearch_password=SecretStr(SECRET), milvus_token=SecretStr(SECRET))
    for text in (
        repr(settings),
        str(settings),
        settings.model_dump_json(),
        str(settings.model_dump()),
    ):
        assert SECRET not in text
    # ...but the code that connects can still read them.
    assert settings.kafka_sasl_password is not None
    assert settings.kafka_sasl_password.get_secret_value() == SECRET


def test_invalid_security_protocol_is_rejected(
    clean_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CATSTREAM_KAFKA_SECURITY_PROTOCOL", "TLS")
    with pytest.raises(ValidationError, match="kafka_security_protocol"):
        Settings()
