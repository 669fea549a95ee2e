"""Does a real response match its schema in the published description (webapp/openapi.py)?
Used by the flows Schemathesis cannot reach with random input (a duel batch needs a stocked
pool and timed choices; a rating needs another player's description)."""
from __future__ import annotations

from typing import Any

import jsonschema_rs

from webapp.openapi import document


def assert_documented(payload: Any, schema_name: str) -> None:
    doc = document()
    schema = {"$ref": f"#/components/schemas/{schema_name}", "components": doc["components"]}
    errors = [str(e) for e in jsonschema_rs.validator_for(schema).iter_errors(payload)]
    assert not errors, (schema_name, errors, payload)
