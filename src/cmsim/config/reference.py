"""Scenario field reference and JSON Schema, generated from the pydantic models.

One source: the models of :mod:`cmsim.config.schema` give the structure, types, defaults and
bounds (the :class:`~cmsim.config.quantity.QuantitySpec` of every quantity field and the
pydantic constraints); the numpydoc ``Attributes`` section of each model's docstring gives the
meaning. A field added to a model appears here without further work, and
:func:`undocumented_fields` names every field whose docstring entry is missing.

Command line::

    python -m cmsim.config.reference                  # Markdown to stdout
    python -m cmsim.config.reference --write PATH     # write the file (docs/scenario-reference.md)
    python -m cmsim.config.reference --check PATH     # exit 1 if PATH is stale
"""

from __future__ import annotations

import argparse
import inspect
import json
import re
import sys
import types
import typing
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import annotated_types
from pydantic import BaseModel
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined

from cmsim.config.quantity import QuantitySpec
from cmsim.config.schema import ParameterSet, Scenario
from cmsim.units import DIMENSIONS, SI_UNIT

__all__ = [
    "DEFAULT_PATH",
    "FieldDoc",
    "json_schema",
    "markdown",
    "model_docs",
    "undocumented_fields",
]

#: Where the repository keeps the generated reference (relative to the repository root).
DEFAULT_PATH = Path("docs") / "scenario-reference.md"

#: Friendly titles of the discriminated families (by discriminator key); others get a generic one.
_FAMILY_TITLES = {"model": "RTD tables", "type": "Disturbances"}


# --------------------------------------------------------------------------- docstrings


def _attributes_section(doc: str) -> dict[str, str]:
    """Map every name of a numpydoc ``Attributes`` section to its description."""
    lines = doc.splitlines()
    out: dict[str, str] = {}
    try:
        start = next(i for i, line in enumerate(lines[:-1])
                     if line.strip() == "Attributes" and set(lines[i + 1].strip()) == {"-"})
    except StopIteration:
        return out
    names: list[str] = []
    text: list[str] = []

    def flush() -> None:
        for n in names:
            out[n] = " ".join(text).strip()

    for i in range(start + 2, len(lines)):
        line = lines[i]
        if i + 1 < len(lines) and line.strip() and set(lines[i + 1].strip()) == {"-"} \
                and not line.startswith(" "):
            break  # next numpydoc section
        if line and not line.startswith(" "):
            flush()
            head = line.split(" : ", 1)[0]
            names = [n.strip() for n in head.split(",") if n.strip()]
            text = []
        elif line.strip():
            text.append(line.strip())
    flush()
    return out


def _field_descriptions(cls: type[BaseModel]) -> dict[str, str]:
    """Descriptions from the ``Attributes`` sections of ``cls`` and its bases (own first)."""
    out: dict[str, str] = {}
    for klass in cls.__mro__:
        if klass.__dict__.get("__doc__"):
            for name, text in _attributes_section(inspect.cleandoc(klass.__doc__)).items():
                out.setdefault(name, _md(text))
    return out


def _summary(cls: type[BaseModel]) -> str:
    """First docstring paragraph without a leading ``[table]:`` / ``key = "x":`` label."""
    doc = inspect.cleandoc(cls.__doc__ or "")
    para = " ".join(doc.split("\n\n", 1)[0].split())
    para = re.sub(r"^``[^`]+``(:\s*|\.$)", "", para)
    return _md(para[:1].upper() + para[1:])


def _md(text: str) -> str:
    """reStructuredText inline literals (double backticks) as Markdown code."""
    return text.replace("``", "`")


# --------------------------------------------------------------------------- annotations


def _args(tp: Any) -> tuple[Any, ...]:
    return typing.get_args(tp)


def _strip(tp: Any) -> tuple[Any, list[Any]]:
    """Remove ``Annotated`` layers; return the bare type and the collected metadata."""
    meta: list[Any] = []
    while typing.get_origin(tp) is typing.Annotated:
        base, *extra = _args(tp)
        meta.extend(extra)
        tp = base
    return tp, meta


def _is_union(tp: Any) -> bool:
    return typing.get_origin(tp) in (typing.Union, types.UnionType)


def _non_none(tp: Any) -> tuple[Any, bool]:
    """``X | None`` -> (X, True); anything else -> (tp, False)."""
    bare, _ = _strip(tp)
    if _is_union(bare):
        members = [a for a in _args(bare) if a is not type(None)]
        if len(members) < len(_args(bare)):
            return (members[0] if len(members) == 1 else typing.Union[tuple(members)]), True  # noqa: UP007
    return tp, False


def _models_in(tp: Any) -> list[type[BaseModel]]:
    """BaseModel classes reachable in an annotation (union members, list items)."""
    bare, _ = _strip(tp)
    if isinstance(bare, type) and issubclass(bare, BaseModel):
        return [bare]
    found: list[type[BaseModel]] = []
    for a in _args(bare):
        for m in _models_in(a):
            if m not in found:
                found.append(m)
    return found


def _discriminator(members: list[type[BaseModel]]) -> str | None:
    """The Literal field that tells the members of a union apart (``model``, ``type``)."""
    common = set.intersection(*(set(m.model_fields) for m in members))
    for name in sorted(common):
        if all(typing.get_origin(m.model_fields[name].annotation) is Literal for m in members):
            return name
    return None


def _quantity(tp: Any, meta: Sequence[Any] = ()) -> QuantitySpec | None:
    for m in meta:
        if isinstance(m, QuantitySpec):
            return m
    bare, inner = _strip(tp)
    for m in inner:
        if isinstance(m, QuantitySpec):
            return m
    return None


def _constraints(meta: Sequence[Any], noun: str = "entry") -> list[str]:
    out = []
    expanded: list[Any] = []
    for m in meta:  # a pydantic Field(...) inside Annotated carries its constraints as metadata
        expanded.extend(m.metadata if isinstance(m, FieldInfo) else [m])
    for m in expanded:
        if isinstance(m, annotated_types.Gt):
            out.append(f"> {m.gt}")
        elif isinstance(m, annotated_types.Ge):
            out.append(f">= {m.ge}")
        elif isinstance(m, annotated_types.Lt):
            out.append(f"< {m.lt}")
        elif isinstance(m, annotated_types.Le):
            out.append(f"<= {m.le}")
        elif isinstance(m, annotated_types.MinLen) and m.min_length:
            out.append("not empty" if noun == "character" and m.min_length == 1
                       else f"at least {m.min_length} {noun}{'s' if m.min_length > 1 else ''}")
        elif isinstance(m, annotated_types.MaxLen):
            out.append(f"at most {m.max_length} {noun}s")
    return out


def _quantity_type(spec: QuantitySpec) -> str:
    return spec.dimension.replace("_", " ")


def _literal_text(values: Sequence[Any]) -> str:
    return ", ".join(f'`"{v}"`' if isinstance(v, str) else f"`{v}`" for v in values)


def _describe_type(tp: Any, meta: Sequence[Any], family_of: dict[Any, str]) -> tuple[
        str, str, list[str]]:
    """(type text, unit text, allowed-value rules) of an annotation."""
    tp, optional = _non_none(tp)
    bare, inner = _strip(tp)
    meta = [*meta, *inner]
    spec = _quantity(tp, meta)
    if spec is not None:
        unit = spec.unit if spec.unit not in ("1", "") else "-"
        if spec.dimension == "fraction":
            unit = "- (fraction)"
        return _quantity_type(spec), unit, spec.rules()
    origin = typing.get_origin(bare)
    if origin is Literal:
        values = _args(bare)
        return "string", "-", [f"{'' if len(values) == 1 else 'one of '}{_literal_text(values)}"]
    if bare is bool:
        return "boolean", "-", []
    if bare is int:
        return "integer", "-", _constraints(meta)
    if bare is str:
        return "string", "-", _constraints(meta, "character") + _name_rule(meta)
    if origin is tuple:
        items = _args(bare)
        parts = [_describe_type(a, (), family_of) for a in items]
        rules = [f"item {i + 1}: {', '.join(r)}" for i, (_, _, r) in enumerate(parts) if r]
        return (f"array of {len(items)} {parts[0][0]}", parts[0][1], rules)
    if origin is list:
        (item,) = _args(bare)
        models = _models_in(item)
        if len(models) > 1:
            key = family_of.get(frozenset(models), "tables")
            return f"array of {key}", "-", _constraints(meta, "table")
        if len(models) == 1:
            return f"array of {family_of.get(models[0], 'tables')}", "-", _constraints(
                meta, "table")
        text, unit, rules = _describe_type(item, (), family_of)
        return f"array of {text}", unit, _constraints(meta) + [f"each {r}" for r in rules]
    models = _models_in(bare)
    if len(models) > 1:
        return family_of.get(frozenset(models), "table"), "-", []
    if len(models) == 1:
        return family_of.get(models[0], "table"), "-", []
    return getattr(bare, "__name__", str(bare)), "-", _constraints(meta)


def _name_rule(meta: Sequence[Any]) -> list[str]:
    for m in meta:
        func = getattr(m, "func", None)
        if func is not None and getattr(func, "__name__", "") == "_check_name":
            return ["a name without `.` or surrounding spaces"]
    return []


def _default_text(info: Any, spec: QuantitySpec | None) -> str:
    if info.default_factory is not None:
        value = info.default_factory()
        if isinstance(value, BaseModel):
            return "(table defaults)"
        return f"`{json.dumps(value)}`"
    value = info.default
    if value is PydanticUndefined:
        return "**required**"
    if value is None:
        return "not set"
    if isinstance(value, bool):
        return f"`{str(value).lower()}`"
    if isinstance(value, str):
        return f'`"{value}"`'
    if isinstance(value, tuple | list):
        return "`[" + ", ".join(f"{v:g}" if isinstance(v, float) else str(v) for v in value) + "]`"
    if isinstance(value, float) and spec is not None and spec.unit not in ("1", ""):
        return f"`{value:g}` {spec.unit}"
    if isinstance(value, float):
        return f"`{value:g}`"
    return f"`{value}`"


# --------------------------------------------------------------------------- model walk


@dataclass
class FieldDoc:
    """One documented key of a table.

    Attributes
    ----------
    key : str
        TOML key.
    type : str
        Type in words (``"time"``, ``"boolean"``, ``"array of 2 fraction"``, ...).
    unit : str
        SI unit of a plain number (``"-"`` when none).
    default : str
        Default as Markdown (``"**required**"`` when the key must be given).
    allowed : str
        Allowed values and ranges.
    meaning : str
        Description from the model's docstring (empty when undocumented).
    """

    key: str
    type: str
    unit: str
    default: str
    allowed: str
    meaning: str


@dataclass
class TableDoc:
    """One TOML table (a model class) with its keys and where it is used.

    Attributes
    ----------
    title : str
        Section title, e.g. ``"[feeders.hopper]"`` or ``'model = "cstr"'``.
    model : type
        The pydantic model.
    summary : str
        First paragraph of the model's docstring.
    fields : list of FieldDoc
        Its keys.
    """

    title: str
    model: type[BaseModel]
    summary: str
    fields: list[FieldDoc] = field(default_factory=list)


@dataclass
class FamilyDoc:
    """A discriminated union of tables (RTD tables, disturbances).

    Attributes
    ----------
    title : str
        Section title.
    key : str
        The discriminator key (``model``, ``type``).
    used_at : list of str
        Field paths that take one of these tables.
    members : list of TableDoc
        One per discriminator value.
    """

    title: str
    key: str
    used_at: list[str]
    members: list[TableDoc]


def _table_fields(cls: type[BaseModel], family_of: dict[Any, str]) -> list[FieldDoc]:
    docs = _field_descriptions(cls)
    rows = []
    for name, info in cls.model_fields.items():
        text, unit, rules = _describe_type(info.annotation, info.metadata, family_of)
        spec = _quantity(info.annotation, info.metadata)
        rows.append(FieldDoc(key=name, type=text, unit=unit, default=_default_text(info, spec),
                             allowed="; ".join(rules) or "-", meaning=docs.get(name, "")))
    return rows


def _family_title(key: str, members: list[type[BaseModel]]) -> str:
    return _FAMILY_TITLES.get(key, f"Tables selected by `{key}`")


def model_docs(root: type[BaseModel] = Scenario) -> tuple[list[TableDoc], list[FamilyDoc]]:
    """Walk the models from ``root`` and document every table and every union of tables.

    Returns
    -------
    tables : list of TableDoc
        Plain tables, in file order (the root first, titled ``"top level"``).
    families : list of FamilyDoc
        Discriminated unions (each documented once, with every path that uses it).
    """
    tables: list[TableDoc] = []
    families: dict[frozenset, FamilyDoc] = {}
    family_of: dict[Any, str] = {}
    seen: set[type[BaseModel]] = set()

    def visit(cls: type[BaseModel], title: str, path: str) -> None:
        if cls in seen:
            return
        seen.add(cls)
        doc = TableDoc(title=title, model=cls, summary=_summary(cls))
        tables.append(doc)
        family_of[cls] = f"[table](#{_anchor(title)})"
        for name, info in cls.model_fields.items():
            inner, _ = _non_none(info.annotation)
            bare, _ = _strip(inner)
            is_list = typing.get_origin(bare) is list
            sub_path = f"{path}.{name}" if path else name
            models = _models_in(inner)
            if len(models) == 1:
                sub_title = f"[[{sub_path}]]" if is_list else f"[{sub_path}]"
                visit(models[0], sub_title, sub_path)
            elif len(models) > 1:
                shown = f"{sub_path}[]" if is_list else sub_path
                family(models, shown)
        doc.fields = _table_fields(cls, family_of)

    def family(members: list[type[BaseModel]], used_at: str) -> None:
        fam_key = frozenset(members)
        if fam_key in families:
            if used_at not in families[fam_key].used_at:
                families[fam_key].used_at.append(used_at)
            return
        key = _discriminator(members) or "?"
        title = _family_title(key, members)
        family_of[fam_key] = f"[{title}](#{_anchor(title)})"
        fam = FamilyDoc(title=title, key=key, used_at=[used_at], members=[])
        families[fam_key] = fam
        for m in members:
            value = _args(m.model_fields[key].annotation)[0] if key != "?" else m.__name__
            seen.add(m)
            member = TableDoc(title=f'{key} = "{value}"', model=m, summary=_summary(m))
            fam.members.append(member)
            for name, info in m.model_fields.items():
                inner, _ = _non_none(info.annotation)
                sub = _models_in(inner)
                if len(sub) > 1:
                    bare, _ = _strip(inner)
                    family(sub, f"{name}" + ("[]" if typing.get_origin(bare) is list else "")
                           + f" of {key} = \"{value}\"")
                elif len(sub) == 1:
                    visit(sub[0], f"[{used_at}.{name}]", f"{used_at}.{name}")
        for member in fam.members:
            member.fields = _table_fields(member.model, family_of)

    visit(root, "top level", "")
    # field types of tables visited before their family was named: recompute
    for t in tables:
        t.fields = _table_fields(t.model, family_of)
    for fam in families.values():
        for member in fam.members:
            member.fields = _table_fields(member.model, family_of)
    return tables, list(families.values())


def undocumented_fields(root: type[BaseModel] = Scenario) -> list[str]:
    """``"Model.field"`` for every field without an ``Attributes`` entry in its docstring."""
    tables, families = model_docs(root)
    docs = tables + [m for f in families for m in f.members]
    return [f"{t.model.__name__}.{f.key}" for t in docs for f in t.fields if not f.meaning]


# --------------------------------------------------------------------------- Markdown


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _table_markdown(t: TableDoc, level: str) -> Iterator[str]:
    yield f"{level} {'`' + t.title + '`' if t.title != 'top level' else 'Top level'}"
    yield ""
    if t.summary:
        yield _cell(t.summary)
        yield ""
    yield "| key | type | unit | default | allowed | meaning |"
    yield "|---|---|---|---|---|---|"
    for f in t.fields:
        yield (f"| `{f.key}` | {_cell(f.type)} | {_cell(f.unit)} | {_cell(f.default)} | "
               f"{_cell(f.allowed)} | {_cell(f.meaning)} |")
    yield ""


def _units_markdown() -> Iterator[str]:
    yield "| dimension | SI unit (plain numbers) | accepted unit strings |"
    yield "|---|---|---|"
    for dim, table in DIMENSIONS.items():
        unit = SI_UNIT[dim] if SI_UNIT[dim] not in ("1", "") else "- (the number itself)"
        units = ", ".join(f"`{u}`" for u in table) or "(plain numbers only)"
        yield f"| {dim.replace('_', ' ')} | {unit} | {units} |"
    yield ""


def markdown() -> str:
    """The scenario field reference as Markdown (the text of ``docs/scenario-reference.md``)."""
    tables, families = model_docs(Scenario)
    ptables, pfamilies = model_docs(ParameterSet)
    out = [
        "# Scenario file reference",
        "",
        "<!-- Generated from the pydantic models of src/cmsim/config/schema.py by "
        "`python -m cmsim.config.reference --write docs/scenario-reference.md`. "
        "Do not edit by hand: tests/config/test_reference.py fails when this file is stale. -->",
        "",
        "A scenario is a TOML file. Every key below is checked when the file is read "
        "(`cmsim validate FILE`); unknown keys are errors. Start from `cmsim init` or a shipped "
        "scenario (`cmsim list`); `cmsim schema` prints the JSON Schema for editors. Concepts "
        "behind the keys: [conventions and units](conventions.md), [RTD models](rtd.md), "
        "[monitor and diversion](monitor.md), [control strategies](control.md).",
        "",
        "Before a run starts (and in `cmsim validate`), cmsim also checks that the run fits in "
        "the machine's memory: the per-tick records of `simulation.duration / simulation.dt` "
        "ticks, and the state the stages and the monitor keep over their times (an RTD's "
        "reach of mean + 30 standard deviations, a blender slowed by a speed change, the gate "
        "delay, the NIR latency and integration time, the load-cell period and window, the "
        "feeder controllers' load-cell window). A run "
        "that cannot fit is refused, naming the field with the largest part, instead of "
        "failing part way with an out-of-memory error.",
        "",
        "## Quantities and units",
        "",
        "A quantity is a plain number in the SI unit of its dimension or a string with a unit "
        '(`"20 kg/h"`, `"250 mg"`, `"2 min"`, `"5 %"`). Fractions are plain fractions '
        '(`0.05`) or percent strings (`"5 %"`). Ranges in the tables are in SI.',
        "",
        *_units_markdown(),
        "## Contents",
        "",
    ]
    for t in tables:
        name = "Top level" if t.title == "top level" else f"`{t.title}`"
        out.append(f"- [{name}](#{_anchor(t.title)})")
    for fam in families:
        out.append(f"- [{fam.title}](#{_anchor(fam.title)})")
    out.append("- [Parameter-set files](#parameter-set-files)")
    out.append("")
    for t in tables:
        out.extend(_table_markdown(t, "##"))
    for fam in families:
        out.extend(_family_markdown(fam, "##"))
    out += [
        "## Parameter-set files",
        "",
        "A file in `models/` (or shipped with cmsim) that a scenario names with "
        '`{ model = "model", name = "..." }`; `cmsim list` shows them.',
        "",
    ]
    for t in ptables:
        t.title = "parameter-set file" if t.title == "top level" else t.title
        out.extend(_table_markdown(t, "###"))
    known = {frozenset(m.model for m in f.members) for f in families}
    for fam in pfamilies:
        if frozenset(m.model for m in fam.members) not in known:
            out.extend(_family_markdown(fam, "###"))
    return "\n".join(out).rstrip() + "\n"


def _family_markdown(fam: FamilyDoc, level: str) -> Iterator[str]:
    yield f"{level} {fam.title}"
    yield ""
    used = ", ".join(f"`{u}`" for u in fam.used_at)
    yield (f"Chosen by the key `{fam.key}`: one of {_literal_text([m.title.split(' = ')[1][1:-1] for m in fam.members])}. "  # noqa: E501
           f"Used at {used}.")
    yield ""
    for member in fam.members:
        yield from _table_markdown(member, level + "#")


def _anchor(title: str) -> str:
    """GitHub's heading anchor of a title as rendered by :func:`_table_markdown`."""
    text = "Top level" if title == "top level" else title
    text = text.lower()
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


# --------------------------------------------------------------------------- JSON Schema


def json_schema() -> dict[str, Any]:
    """JSON Schema (draft 2020-12) of a scenario file, with every key's meaning and default.

    Editors that validate TOML against a JSON Schema (e.g. Taplo / Even Better TOML with a
    ``#:schema`` line) then complete keys and flag unknown ones.
    """
    schema = Scenario.model_json_schema()
    tables, families = model_docs(Scenario)
    docs = {t.model.__name__: t for t in tables}
    docs.update({m.model.__name__: m for f in families for m in f.members})
    defs = schema.get("$defs", {})
    for name, table in docs.items():
        target = schema if table.model is Scenario else defs.get(name)
        if target is None:
            continue
        target["description"] = table.summary
        props = target.get("properties", {})
        for f in table.fields:
            if f.key in props:
                extra = [] if f.default == "**required**" else [f"default {f.default}"]
                if f.unit != "-":
                    extra.append(f"unit {f.unit}")
                text = f.meaning + (f" ({'; '.join(extra)})" if extra else "")
                props[f.key]["description"] = text.replace("`", "")
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "cmsim scenario file"
    return schema


# --------------------------------------------------------------------------- command line


def main(argv: Sequence[str] | None = None) -> int:
    """Print, write or check the Markdown reference; return the exit code."""
    parser = argparse.ArgumentParser(prog="python -m cmsim.config.reference",
                                     description="Scenario field reference (Markdown).")
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--write", metavar="PATH", type=Path, help="write the reference to PATH")
    group.add_argument("--check", metavar="PATH", type=Path,
                       help="exit 1 if PATH differs from the generated reference")
    args = parser.parse_args(argv)
    missing = undocumented_fields()
    if missing:
        print("undocumented fields (add them to the model's Attributes section): "
              + ", ".join(missing), file=sys.stderr)
        return 1
    text = markdown()
    if args.write:
        args.write.write_text(text, encoding="utf-8")
    elif args.check:
        current = args.check.read_text(encoding="utf-8") if args.check.is_file() else ""
        if current != text:
            print(f"{args.check} is stale: run python -m cmsim.config.reference --write "
                  f"{args.check}", file=sys.stderr)
            return 1
    else:
        sys.stdout.write(text)
    return 0


if __name__ == "__main__":  # pragma: no cover - exercised through main()
    raise SystemExit(main())
