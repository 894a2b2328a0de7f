"""Which scenario keys of the PAT monitor v2 this cmsim's scenario schema knows.

Some fault scenarios use keys that arrive with the monitor v2 (NIR sensor faults as
disturbances, the assay of a new lot, the diversion policy). The benchmark and its tests ask the
schema itself (its JSON schema) whether a key exists, so a case is skipped only for a key that is
really missing, never for a typo elsewhere in the file.

Features (the names used in messages):

``disturbance nir_fault``
    ``[[disturbances]] type = "nir_fault"``.
``refill.assay``
    ``assay`` on ``type = "refill"`` disturbances.
``diversion.policy``, ``diversion.max_risk``
    Keys of ``[diversion]``.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from typing import Any

__all__ = ["FEATURES", "available_features", "features_in_schema", "features_used",
           "missing_features"]

#: Every feature this module knows.
FEATURES = ("disturbance nir_fault", "refill.assay", "diversion.policy", "diversion.max_risk")


def _resolve(js: dict[str, Any], node: Any) -> list[dict[str, Any]]:
    """Object schemas a node stands for (following $ref, anyOf and oneOf; null dropped)."""
    if not isinstance(node, dict):
        return []
    ref = node.get("$ref")
    if isinstance(ref, str) and ref.startswith("#/$defs/"):
        return _resolve(js, js.get("$defs", {}).get(ref.split("/")[-1]))
    out: list[dict[str, Any]] = []
    for key in ("anyOf", "oneOf", "allOf"):
        for sub in node.get(key, []):
            out.extend(_resolve(js, sub))
    if "properties" in node:
        out.append(node)
    return out


def _type_values(variant: dict[str, Any]) -> set[str]:
    prop = variant.get("properties", {}).get("type", {})
    vals = set(prop.get("enum", []))
    if "const" in prop:
        vals.add(prop["const"])
    return {v for v in vals if isinstance(v, str)}


def features_in_schema(js: Mapping[str, Any]) -> frozenset[str]:
    """The features of :data:`FEATURES` that a scenario JSON schema accepts.

    Parameters
    ----------
    js : mapping
        JSON schema of the scenario (``Scenario.model_json_schema()``).

    Returns
    -------
    frozenset of str
    """
    js = dict(js)
    props = js.get("properties", {})
    found: set[str] = set()
    for variant in _resolve(js, props.get("disturbances", {}).get("items")):
        types = _type_values(variant)
        if "nir_fault" in types:
            found.add("disturbance nir_fault")
        if "refill" in types and "assay" in variant.get("properties", {}):
            found.add("refill.assay")
    for table in _resolve(js, props.get("diversion")):
        for key in ("policy", "max_risk"):
            if key in table.get("properties", {}):
                found.add(f"diversion.{key}")
    return frozenset(found)


@functools.cache
def available_features() -> frozenset[str]:
    """The features of :data:`FEATURES` that this cmsim's scenario schema accepts.

    Returns
    -------
    frozenset of str
    """
    from cmsim.config.schema import Scenario  # noqa: PLC0415 - pydantic only when asked

    return features_in_schema(Scenario.model_json_schema())


def features_used(raw: Mapping[str, Any]) -> set[str]:
    """The features of :data:`FEATURES` that raw scenario data (parsed TOML) uses.

    Parameters
    ----------
    raw : mapping
        A scenario as read from its TOML file (before validation).

    Returns
    -------
    set of str
    """
    used: set[str] = set()
    dist = raw.get("disturbances")
    for d in dist if isinstance(dist, list) else []:
        if not isinstance(d, Mapping):
            continue
        if d.get("type") == "nir_fault":
            used.add("disturbance nir_fault")
        if d.get("type") == "refill" and "assay" in d:
            used.add("refill.assay")
    div = raw.get("diversion")
    if isinstance(div, Mapping):
        used |= {f"diversion.{k}" for k in ("policy", "max_risk") if k in div}
    return used


def missing_features(raw: Mapping[str, Any], overrides: list[str] | None = None) -> list[str]:
    """Features a scenario (and its ``path=value`` overrides) needs but the schema lacks.

    Parameters
    ----------
    raw : mapping
        Parsed scenario TOML.
    overrides : list of str, optional
        ``--set`` items; ``diversion.policy=...`` and ``diversion.max_risk=...`` count.

    Returns
    -------
    list of str
        Sorted; empty when this cmsim can run the scenario as written.
    """
    used = features_used(raw)
    for item in overrides or []:
        path = item.split("=", 1)[0].strip()
        if path in ("diversion.policy", "diversion.max_risk"):
            used.add(path)
    return sorted(used - available_features())
