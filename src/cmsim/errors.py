"""Exceptions of cmsim.

Every error a user can cause names *where* (file and field path), *what* (the value) and *why*
(the rule). They subclass the built-in exception a generic handler expects.
"""

from __future__ import annotations

from typing import Any

__all__ = ["CmsimError", "InputError", "ParameterError", "ScenarioError", "SimulationError"]


class CmsimError(Exception):
    """Base class of all cmsim exceptions."""


class InputError(CmsimError, ValueError):
    """Invalid input: the CLI maps it to exit code 2."""


class ParameterError(InputError):
    """A bad parameter passed to a Python function or constructor.

    Parameters
    ----------
    name : str
        Parameter name, e.g. ``"mean_residence_time"``.
    value : Any
        The offending value.
    rule : str
        The rule it breaks, e.g. ``"must be > 0"``.
    """

    def __init__(self, name: str, value: Any, rule: str) -> None:
        self.name = name
        self.value = value
        self.rule = rule
        super().__init__(f"{name}={_short_repr(value)}: {rule}")

    def __reduce__(self):  # picklable across worker processes
        return (type(self), (self.name, self.value, self.rule))


class ScenarioError(InputError):
    """One or more problems in a scenario file.

    Parameters
    ----------
    source : str
        The file (or ``"<scenario>"`` for an in-memory scenario).
    problems : list of (field path, value, rule)
        Each problem found, in file order.
    """

    def __init__(self, source: str, problems: list[tuple[str, Any, str]]) -> None:
        self.source = str(source)
        self.problems = list(problems)
        lines = [f"{self.source}: {len(self.problems)} problem(s)"]
        for path, value, rule in self.problems:
            lines.append(f"  {path or '<root>'} = {_short_repr(value)}: {rule}")
        super().__init__("\n".join(lines))

    def __reduce__(self):  # picklable across worker processes
        return (type(self), (self.source, self.problems))


class SimulationError(CmsimError, RuntimeError):
    """A run failed while simulating (a broken invariant, an I/O failure): CLI exit code 1."""


def _short_repr(value: Any, limit: int = 80) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."
