"""Load the JSON Schemas in ``schemas/`` and check documents against them.

Every JSON document refiner writes or reads is checked here, so error messages
have one shape everywhere: ``<json path>: <rule>``.
"""

from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import Any

import jsonschema
import referencing

from refiner.errors import ValidationError

__all__ = ["schema_dir", "load_schema", "problems", "validate"]

SCHEMA_NAMES = ("search_space", "run_config", "run", "trial", "decisions", "surrogate", "overrides", "audit", "approval")


def schema_dir() -> Path:
    """The folder holding ``*.schema.json``: packaged copy first, then the source tree's."""
    packaged = Path(__file__).parent / "_schemas"
    if packaged.is_dir():
        return packaged
    return Path(__file__).resolve().parent.parent / "schemas"


@functools.cache
def load_schema(name: str) -> dict[str, Any]:
    path = schema_dir() / f"{name}.schema.json"
    with open(path, encoding="utf-8") as fh:
        return json.load(fh)


@functools.cache
def _registry() -> referencing.Registry:
    # Schemas refer to each other by file name relative to their $id (decisions -> search_space),
    # so one definition of a parameter serves every document that holds one.
    resources = []
    for path in sorted(schema_dir().glob("*.schema.json")):
        resource = referencing.Resource.from_contents(load_schema(path.name[: -len(".schema.json")]))
        resources.append((resource.id(), resource))
    return referencing.Registry().with_resources(resources)


@functools.cache
def _validator(name: str) -> jsonschema.protocols.Validator:
    schema = load_schema(name)
    cls = jsonschema.validators.validator_for(schema)
    cls.check_schema(schema)
    return cls(schema, registry=_registry(), format_checker=cls.FORMAT_CHECKER)


def json_path(parts: Any) -> str:
    """``["parameters", 2, "low"]`` -> ``"parameters[2].low"`` (``"$"`` for the root)."""
    out = ""
    for part in parts:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "$"


def _leaf_errors(error: jsonschema.ValidationError) -> list[jsonschema.ValidationError]:
    # "if/then" and "anyOf" wrap the useful error; report the innermost ones.
    if error.context:
        return [leaf for sub in error.context for leaf in _leaf_errors(sub)]
    return [error]


def problems(document: Any, schema: str) -> list[str]:
    """Every rule ``document`` breaks, as sorted ``"<json path>: <rule>"`` lines (empty if valid)."""
    found = set()
    for error in _validator(schema).iter_errors(document):
        for leaf in _leaf_errors(error):
            found.add(f"{json_path(leaf.absolute_path)}: {leaf.message}")
    return sorted(found)


def validate(document: Any, schema: str, source: str | None = None) -> None:
    """Raise :class:`ValidationError` listing every broken rule, or return quietly."""
    found = problems(document, schema)
    if found:
        raise ValidationError(found, source=source)
