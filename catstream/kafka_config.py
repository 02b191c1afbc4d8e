"""The one place that turns Settings into Kafka client configuration.

confluent-kafka (librdkafka) takes a flat dict; faust/aiokafka take a URL
and an SSL context/credentials. Both come from the same settings so the
producer, admin client and stream worker cannot drift apart.
"""

from __future__ import annotations

import ssl
from typing import Any

from catstream.settings import Settings


def librdkafka_config(settings: Settings, **extra: Any) -> dict[str, Any]:
    """Config for confluent-kafka Producer/Consumer/AdminClient."""
    config: dict[str, Any] = {
        "bootstrap.servers": settings.kafka_bootstrap,
        "security.protocol": settings.kafka_security_protocol,
    }
    if settings.kafka_sasl_mechanism:
        config["sasl.mechanism"] = settings.kafka_sasl_mechanism
        config["sasl.username"] = settings.kafka_sasl_username or ""
        password = settings.kafka_sasl_password
        config["sasl.password"] = password.get_secret_value() if password else ""
    if settings.kafka_ssl_ca:
        config["ssl.ca.location"] = str(settings.kafka_ssl_ca)
    config.update(extra)
    return config


def faust_broker_options(settings: Settings) -> dict[str, Any]:
    """Keyword arguments for ``faust.App`` that carry broker address and auth."""
    options: dict[str, Any] = {"broker": f"kafka://{settings.kafka_bootstrap}"}
    protocol = settings.kafka_security_protocol
    if protocol == "PLAINTEXT":
        return options
    import faust  # local import: faust is heavy and only the worker needs it

    context = ssl.create_default_context(
        cafile=str(settings.kafka_ssl_ca) if settings.kafka_ssl_ca else None
    )
    if protocol == "SSL":
        options["broker_credentials"] = context
    else:
        password = settings.kafka_sasl_password
        options["broker_credentials"] = faust.SASLCredentials(
            username=settings.kafka_sasl_username or "",
            password=password.get_secret_value() if password else "",
            mechanism=settings.kafka_sasl_mechanism or "PLAIN",
            ssl_context=context if protocol == "SASL_SSL" else None,
        )
    return options
