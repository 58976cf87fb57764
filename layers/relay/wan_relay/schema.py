"""The published event contract, generated from `CompletionDetail`.

`python -m wan_relay.schema` rewrites `schemas/`: the Draft 2020-12 schema subscribers validate
against, and its Draft 4 rendering for the EventBridge schema registry (which accepts only
OpenApi3 or JSONSchemaDraft4). A test fails when the files and the model disagree.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import msgspec

from .models import DETAIL_TYPE_COMPLETED, SCHEMA_VERSION, CompletionDetail

SCHEMA_ID = "https://wan-relay.dev/schemas/wan-task-completed/1.0.json"
DRAFT_2020_12 = "https://json-schema.org/draft/2020-12/schema"
DRAFT_4 = "http://json-schema.org/draft-04/schema#"
SCHEMA_FILE = "wan-task-completed.schema.json"
DRAFT4_FILE = "wan-task-completed.draft4.json"
#: the schema's name (the registry's code bindings use it) and what it describes
TITLE = "WanTaskCompleted"
DESCRIPTION = f"Detail of the '{DETAIL_TYPE_COMPLETED}' EventBridge event."


def completion_schema() -> dict[str, Any]:
    """msgspec's schema of `CompletionDetail`, its root (a `$ref` into `$defs` as msgspec writes it)
    inlined: the top level is the event detail's object, the nested models stay in `$defs`."""
    generated = msgspec.json.schema(CompletionDetail)
    root = generated["$defs"].pop(CompletionDetail.__name__)
    schema = {
        "$schema": DRAFT_2020_12,
        "$id": SCHEMA_ID,
        "x-detail-type": DETAIL_TYPE_COMPLETED,
        "x-schema-version": SCHEMA_VERSION,
        **root,
        "title": TITLE,
        "description": DESCRIPTION,
        "$defs": generated["$defs"],
    }
    return _json_schema_words(schema)


#: keywords whose value maps names to schemas: the names are not keywords
_NAMED_SCHEMAS = frozenset({"properties", "patternProperties", "$defs", "definitions"})


def _rewrite(node: Any, keyword: Callable[[str, Any], list[tuple[str, Any]]]) -> Any:
    """The schema with each keyword, at every depth, replaced by what `keyword(key, value)` gives
    (nothing drops it); subschemas are rewritten first, property names are left alone."""
    if isinstance(node, list):
        return [_rewrite(n, keyword) for n in node]
    if not isinstance(node, dict):
        return node
    out: dict[str, Any] = {}
    for key, value in node.items():
        if key in _NAMED_SCHEMAS and isinstance(value, dict):
            value = {name: _rewrite(v, keyword) for name, v in value.items()}
        else:
            value = _rewrite(value, keyword)
        out.update(keyword(key, value))
    return out


def _json_schema_words(schema: dict[str, Any]) -> dict[str, Any]:
    """Patterns end with `$`, not the models' `\\Z` (ECMA-262 regexes, JSON Schema's, have no `\\Z`,
    and their `$` is the end of the text); no empty `required` (Draft 4 forbids it, and it says nothing)."""

    def keyword(key: str, value: Any) -> list[tuple[str, Any]]:
        if key == "pattern" and isinstance(value, str) and value.endswith("\\Z"):
            return [(key, value[:-2] + "$")]
        if key == "required" and value == []:
            return []
        return [(key, value)]

    return _rewrite(schema, keyword)


def to_draft4(schema: dict[str, Any]) -> dict[str, Any]:
    """The same constraints in Draft 4 words: definitions, enum for const, no $id/x- keys at the top."""

    def keyword(key: str, value: Any) -> list[tuple[str, Any]]:
        if key == "$defs":
            return [("definitions", value)]
        if key == "$ref" and isinstance(value, str):
            return [(key, value.replace("#/$defs/", "#/definitions/"))]
        if key == "const":
            return [("enum", [value])]
        if key in ("$schema", "$id") or key.startswith("x-"):
            return []
        return [(key, value)]

    return {"$schema": DRAFT_4, **_rewrite(schema, keyword)}


def render(schema: dict[str, Any]) -> str:
    return json.dumps(schema, indent=2, sort_keys=True) + "\n"


def write(folder: Path) -> None:
    schema = completion_schema()
    folder.mkdir(parents=True, exist_ok=True)
    (folder / SCHEMA_FILE).write_text(render(schema))
    (folder / DRAFT4_FILE).write_text(render(to_draft4(schema)))


if __name__ == "__main__":
    write(Path(sys.argv[1] if len(sys.argv) > 1 else "schemas"))
