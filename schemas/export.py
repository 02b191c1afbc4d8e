"""Write ``schemas/json/<topic>.schema.json`` from the pydantic models.

Run ``python -m schemas.export`` after changing ``schemas/events.py``; the
contract tests fail until the files match the models again.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from schemas.events import SCHEMA_VERSION, TOPIC_MODELS

SCHEMA_DIR = Path(__file__).parent / "json"


def json_schema(topic_key: str) -> dict[str, Any]:
    schema = TOPIC_MODELS[topic_key].model_json_schema()
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["$id"] = f"https://catstream.dev/schemas/products.{topic_key}.v{SCHEMA_VERSION}.json"
    return schema


def render(topic_key: str) -> str:
    return json.dumps(json_schema(topic_key), indent=2, sort_keys=True) + "\n"


def main() -> None:
    SCHEMA_DIR.mkdir(exist_ok=True)
    for key in TOPIC_MODELS:
        (SCHEMA_DIR / f"products.{key}.schema.json").write_text(render(key))
        print(f"wrote {SCHEMA_DIR / f'products.{key}.schema.json'}")


if __name__ == "__main__":
    main()
