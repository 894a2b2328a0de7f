"""Problems of a scenario as (field path, value, rule): pydantic errors made readable.

Used by the loader for scenario files and by the schema for parameter-set files; it knows no
particular model (the caller passes the root model).
"""

from __future__ import annotations

import difflib
import types
from collections.abc import Iterable, Mapping
from typing import Annotated, Any, Literal, Union, get_args, get_origin

from pydantic import BaseModel, ValidationError

__all__ = ["MISSING", "format_path", "problems_from_validation_error"]


class _Missing:
    """Marker for a required key that is absent (prints as ``<missing>``)."""

    def __repr__(self) -> str:
        return "<missing>"

    def __reduce__(self) -> str:
        return "MISSING"


#: Value reported for a required key that is absent.
MISSING = _Missing()


def format_path(parts: Iterable[str | int]) -> str:
    """``feeders[1].mass_flow`` from ``["feeders", 1, "mass_flow"]``."""
    out = ""
    for p in parts:
        if isinstance(p, int):
            out += f"[{p}]"
        else:
            out += ("." if out else "") + str(p)
    return out


def _candidates(tp: Any) -> list[Any]:
    origin = get_origin(tp)
    if origin is Annotated:
        return _candidates(get_args(tp)[0])
    if origin is Union or origin is types.UnionType:
        out: list[Any] = []
        for a in get_args(tp):
            out.extend(_candidates(a))
        return out
    return [tp]


def _tag_of(cls: type[BaseModel]) -> tuple[str, ...]:
    for key in ("model", "type"):
        field = cls.model_fields.get(key)
        if field is not None and get_origin(field.annotation) is Literal:
            return tuple(get_args(field.annotation))
    return ()


def _allowed_keys(loc: tuple[Any, ...], root: type[BaseModel]) -> list[str]:
    """Keys allowed at a pydantic ``loc`` (tags of discriminated unions included)."""
    cands: list[Any] = [root]
    for item in loc:
        models = [c for c in cands if isinstance(c, type) and issubclass(c, BaseModel)]
        if isinstance(item, int):
            nxt: list[Any] = []
            for c in cands:
                if get_origin(c) in (list, tuple):
                    for a in get_args(c):
                        if a is not Ellipsis:
                            nxt.extend(_candidates(a))
            cands = nxt
            continue
        tagged = [m for m in models if item in _tag_of(m)]
        if tagged and len(models) > 1:
            cands = tagged
            continue
        nxt = []
        for m in models:
            if item in m.model_fields:
                nxt.extend(_candidates(m.model_fields[item].annotation))
        cands = nxt
    keys: list[str] = []
    for c in cands:
        if isinstance(c, type) and issubclass(c, BaseModel):
            keys.extend(k for k in c.model_fields if k not in keys)
    return keys


def _rule(err: Mapping[str, Any]) -> str:
    kind = err["type"]
    msg = str(err["msg"])
    if kind == "missing":
        return "required key is missing"
    if kind in ("model_type", "model_attributes_type", "dict_type"):
        return "must be a table"
    if kind == "list_type":
        return "must be an array"
    if msg.startswith("Value error, "):
        return msg[len("Value error, "):]
    if msg.startswith("Input should be "):
        return "must be " + msg[len("Input should be "):]
    return msg


def problems_from_validation_error(
    exc: ValidationError, raw: Any, root: type[BaseModel]
) -> list[tuple[list[str | int], Any, str]]:
    """The problems of a pydantic ValidationError as ``(path parts, value, rule)``.

    Parameters
    ----------
    exc : pydantic.ValidationError
        From validating ``raw`` against ``root``.
    raw : object
        The data as read (key order and values for the report).
    root : type of pydantic.BaseModel
        The model validated (for the allowed keys of an unknown key).

    Returns
    -------
    list of (list of str or int, object, str)
        Field path parts as in ``raw``, the value (:data:`MISSING` when absent) and the rule.
    """
    out: list[tuple[list[str | int], Any, str]] = []
    for err in exc.errors(include_url=False):
        loc = tuple(err["loc"])
        parts: list[str | int] = []
        node: Any = raw
        tag_seen = False  # pydantic inserts the member's tag once, right after the union's loc
        for item in loc:
            if (isinstance(node, dict) and not tag_seen and isinstance(item, str)
                    and item in (node.get("model"), node.get("type"))):
                tag_seen = True
                continue
            tag_seen = False
            if isinstance(node, dict) and isinstance(item, str) and item in node:
                parts.append(item)
                node = node[item]
            elif isinstance(node, list | tuple) and isinstance(item, int):
                parts.append(item)
                node = node[item] if 0 <= item < len(node) else MISSING
            else:
                parts.append(item)
                node = MISSING
        kind = err["type"]
        value: Any = err.get("input", MISSING)
        rule = _rule(err)
        ctx = err.get("ctx") or {}
        if kind == "missing":
            value = MISSING
            if loc and isinstance(loc[-1], int):
                rule = f"array too short: element [{loc[-1]}] is missing"
        elif kind in ("union_tag_invalid", "union_tag_not_found"):
            disc = str(ctx.get("discriminator", "")).strip("'\"")
            parts.append(disc)
            if kind == "union_tag_invalid":
                value = ctx.get("tag")
                rule = f"must be one of {ctx.get('expected_tags')}"
                tags = [t.strip(" '") for t in str(ctx.get("expected_tags", "")).split(",")]
                close = difflib.get_close_matches(str(value), tags, n=1)
                if close:
                    rule += f"; did you mean {close[0]!r}?"
            else:
                value = MISSING
                table = format_path(parts[:-1])
                rule = f"required key is missing (it selects the kind of {table})"
        elif kind == "extra_forbidden":
            allowed = _allowed_keys(loc[:-1], root)
            rule = "unknown key"
            if allowed:
                close = difflib.get_close_matches(str(loc[-1]), allowed, n=1)
                if close:
                    rule += f"; did you mean {close[0]!r}?"
                rule += f" (allowed: {', '.join(allowed)})"
        out.append((parts, value, rule))
    return out
