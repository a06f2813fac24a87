"""One rule for every identity bench hashes (a run id, a grid hash): each field of a config dataclass takes
part under its own name, unless its metadata says otherwise. The metadata lives with the field, so the
rule is read where the field is declared:

- ``{"id": "omit_default"}``: left out while the field holds its default. Fields added after ids were first
  written carry it, so every earlier run id and grid hash stays what it was.
- ``{"id": "with:<field>"}``: left out while the named sibling field holds its default (a conditional
  model's label dropout means nothing without classes).
- ``{"id": "never"}``: not part of what is trained or measured (paths, logging cadence, display names).
- ``{"id_key": "<name>"}``: the name the hash knows a renamed field by, so a rename changes no id.

`methods/` declares the same metadata on its model configs as plain dicts (it never imports bench).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from typing import Any

NEVER, OMIT_DEFAULT, WITH = "never", "omit_default", "with:"


def _default(f: dataclasses.Field) -> Any:
    if f.default is not dataclasses.MISSING:
        return f.default
    if f.default_factory is not dataclasses.MISSING:  # type: ignore[misc]
        return f.default_factory()  # type: ignore[misc]
    return dataclasses.MISSING


def _at_default(obj: Any, name: str) -> bool:
    f = next(f for f in dataclasses.fields(obj) if f.name == name)
    return getattr(obj, name) == _default(f)


def kept(obj: Any, f: dataclasses.Field) -> bool:
    """Whether field `f` of dataclass instance `obj` enters its identity."""
    rule = f.metadata.get("id", "")
    if rule == NEVER:
        return False
    if rule == OMIT_DEFAULT:
        return not _at_default(obj, f.name)
    if rule.startswith(WITH):
        return not _at_default(obj, rule[len(WITH):])
    return True


def never_fields(cls: type) -> list[str]:
    """The fields of a config dataclass that never enter an identity (paths, cadence)."""
    return [f.name for f in dataclasses.fields(cls) if f.metadata.get("id") == NEVER]


def identity(obj: Any) -> Any:
    """A dataclass as its identity: a nested dict of the fields the rule keeps, under their hash names;
    tuples become lists (as JSON has them). Other values pass through."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.metadata.get("id_key", f.name): identity(getattr(obj, f.name))
                for f in dataclasses.fields(obj) if kept(obj, f)}
    if isinstance(obj, (list, tuple)):
        return [identity(v) for v in obj]
    if isinstance(obj, dict):
        return {k: identity(v) for k, v in obj.items()}
    return obj


def short_hash(d: Any, n: int = 8) -> str:
    """The first n hex digits of the sha256 of `d` as sorted JSON."""
    return hashlib.sha256(json.dumps(d, sort_keys=True).encode()).hexdigest()[:n]


LATER = {"id": OMIT_DEFAULT}  # metadata of a field added after ids were first written
NOT_MEASURED = {"id": NEVER}  # metadata of a field that changes no number (a path, a name, a note)
