"""Exceptions of cmsim.

Every error a user can cause names *where* (file and field path), *what* (the value) and *why*
(the rule). They subclass the built-in exception a generic handler expects.

Every exception keeps its constructor arguments in ``args``, so ``type(e)(*e.args)`` rebuilds
an equal exception (SimPy re-raises an exception from a process that way) and pickling (worker
processes of a sweep) keeps the type, the fields and the message.
"""

from __future__ import annotations

from typing import Any

__all__ = ["CmsimError", "InputError", "ParameterError", "ScenarioError", "ScenarioWarning",
           "SimulationError"]


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
        super().__init__(name, value, rule)
        self.name = name
        self.value = value
        self.rule = rule

    def __str__(self) -> str:
        return f"{self.name}={_short_repr(self.value)}: {self.rule}"


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
        super().__init__(source, problems)
        self.source = str(source)
        self.problems = [tuple(p) for p in problems]

    def __str__(self) -> str:
        lines = [f"{self.source}: {len(self.problems)} problem(s)"]
        for path, value, rule in self.problems:
            lines.append(f"  {path or '<root>'} = {_short_repr(value)}: {rule}")
        return "\n".join(lines)


class ScenarioWarning(UserWarning):
    """A valid but implausible scenario setting (the run goes ahead; the CLI prints it)."""


class SimulationError(CmsimError, RuntimeError):
    """A run failed while simulating (a broken invariant, an I/O failure): CLI exit code 1."""


def _short_repr(value: Any, limit: int = 80) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."
