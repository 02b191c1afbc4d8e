"""Secrets never leave the process in text: logs (structlog and stdlib), status, errors."""

from __future__ import annotations

import io
import json
import logging
import uuid

import pytest
import structlog
from pydantic import SecretStr

from catstream import logs
from catstream.redaction import MASK, redact, redact_value, url_password
from catstream.settings import Settings
from deploy.stack import ServiceStatus
from deploy.stack_cli import format_table


def fresh_secret() -> str:
    return f"pw-{uuid.uuid4().hex[:12]}"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("https://user:pass@es.prod:9200/x", "https://***@es.prod:9200/x"),
        ("failed: http://elastic:p@ss@es:9200 down", "failed: http://***@es:9200 down"),
        ("grpc+tls://token@milvus:19530", "grpc+tls://***@milvus:19530"),
        ("http://host/path@not-userinfo", "http://host/path@not-userinfo"),
        ("no url here", "no url here"),
    ],
)
def test_url_credentials_are_masked(text: str, expected: str) -> None:
    assert redact(text) == expected


def test_url_password_is_what_follows_the_user() -> None:
    assert url_password("https://u:se:cret@h:1") == "se:cret"
    assert url_password("https://token@h") is None
    assert url_password("https://h:1") is None


def test_secrets_of_a_settings_object_are_masked_anywhere() -> None:
    in_url, api_key, token = fresh_secret(), fresh_secret(), fresh_secret()
    Settings(
        elasticsearch_url=f"https://elastic:{in_url}@es.prod:9200",
        elasticsearch_api_key=SecretStr(api_key),
        milvus_token=SecretStr(token),
    )
    text = f"auth failed for {in_url} with key {api_key}; token={token}"
    assert redact(text) == f"auth failed for {MASK} with key {MASK}; token={MASK}"


def test_secret_named_keys_are_masked_in_nested_values() -> None:
    value = {"password": "x", "nested": [{"api_key": "y"}, "http://a:b@c"], "ok": 1}
    assert redact_value(value) == {
        "password": MASK,
        "nested": [{"api_key": MASK}, "http://***@c"],
        "ok": 1,
    }


@pytest.mark.parametrize(
    "key", ["password", "sasl_password", "token", "api_key", "apikey", "secret"]
)
def test_keys_naming_a_secret_are_masked(key: str) -> None:
    assert redact_value({key: "value"}) == {key: MASK}


@pytest.mark.parametrize("key", ["tokens", "tokenizer", "bypassed", "passes", "secretary_count"])
def test_keys_that_only_contain_such_a_word_are_kept(key: str) -> None:
    assert redact_value({key: 3}) == {key: 3}


def test_structlog_lines_carry_no_secret(capsys: pytest.CaptureFixture[str]) -> None:
    secret = fresh_secret()
    Settings(elasticsearch_url=f"https://elastic:{secret}@es.prod:9200")
    logs.configure_logging("INFO", "json")
    log = structlog.get_logger("t")
    try:
        raise ConnectionError(f"cannot reach https://elastic:{secret}@es.prod:9200")
    except ConnectionError:
        log.exception("es_down", url=f"https://elastic:{secret}@es.prod:9200", detail=secret)
    err = capsys.readouterr().err
    assert secret not in err
    line = json.loads(err.strip().splitlines()[-1])
    assert line["url"] == "https://***@es.prod:9200"
    assert "ConnectionError" in line["exception"]


def test_stdlib_records_carry_no_secret() -> None:
    secret = fresh_secret()
    Settings(milvus_uri=f"https://root:{secret}@milvus:19530")
    logs.configure_logging("INFO", "json")
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.addFilter(logs.RedactingFilter())
    lib = logging.getLogger("some.client.library")
    lib.addHandler(handler)
    try:
        lib.warning("retrying %s", f"https://root:{secret}@milvus:19530")
        try:
            raise OSError(secret)
        except OSError:
            lib.exception("failed")
    finally:
        lib.removeHandler(handler)
    assert secret not in stream.getvalue()
    assert "https://***@milvus:19530" in stream.getvalue()


def test_configure_logging_filters_the_root_handlers() -> None:
    logs.configure_logging("INFO", "json")
    for handler in logging.getLogger().handlers:
        assert any(isinstance(f, logs.RedactingFilter) for f in handler.filters)


def test_stack_status_masks_credentials_in_urls_and_details() -> None:
    secret = fresh_secret()
    status = ServiceStatus(
        name="es",
        up=False,
        pid=None,
        urls={"elasticsearch": f"https://elastic:{secret}@127.0.0.1:9200"},
        log="es.log",
        rss_bytes=0,
        detail=f"ConnectionError(https://elastic:{secret}@127.0.0.1:9200)",
    )
    table = format_table([status])
    assert secret not in table
    assert "https://***@127.0.0.1:9200" in table
