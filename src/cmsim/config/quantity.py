"""What a quantity field of the scenario schema accepts: dimension, SI unit and bounds.

:func:`cmsim.config.schema.Q` attaches a :class:`QuantitySpec` to the ``Annotated`` type of
every quantity field. Pydantic ignores it when validating; the field reference
(:mod:`cmsim.config.reference`) and the JSON Schema read it, so the documented unit and range
are the ones the validator enforces.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from cmsim.units import DIMENSIONS, SI_UNIT

__all__ = ["QuantitySpec"]


@dataclass(frozen=True)
class QuantitySpec:
    """Dimension and bounds (in SI) of one quantity field.

    Attributes
    ----------
    dimension : str
        One of :data:`cmsim.units.DIMENSIONS` (``"time"``, ``"mass"``, ...).
    gt, ge, lt, le : float or None
        Exclusive / inclusive lower and upper bounds in the SI unit; None = unbounded.
    """

    dimension: str
    gt: float | None = None
    ge: float | None = None
    lt: float | None = None
    le: float | None = None

    @property
    def unit(self) -> str:
        """SI unit of the dimension (``"1"`` for fractions and plain numbers)."""
        return SI_UNIT[self.dimension]

    @property
    def accepted_units(self) -> tuple[str, ...]:
        """Unit strings accepted in a scenario file (empty: plain numbers only)."""
        return tuple(DIMENSIONS[self.dimension])

    def bound_text(self, value: float) -> str:
        """``value`` with the SI unit, e.g. ``"0 s"`` (no unit for fractions and numbers)."""
        return f"{value:g}" if self.unit in ("1", "") else f"{value:g} {self.unit}"

    def rules(self) -> list[str]:
        """The bounds as text, e.g. ``["> 0 s"]`` or ``[">= 0", "< 1"]``."""
        out = []
        for op, bound in ((">", self.gt), (">=", self.ge), ("<", self.lt), ("<=", self.le)):
            if bound is not None:
                out.append(f"{op} {self.bound_text(bound)}")
        return out

    def json_schema(self) -> dict[str, Any]:
        """JSON Schema of the field: a number in SI within the bounds, or a unit string."""
        number: dict[str, Any] = {"type": "number"}
        for key, bound in (("exclusiveMinimum", self.gt), ("minimum", self.ge),
                           ("exclusiveMaximum", self.lt), ("maximum", self.le)):
            if bound is not None:
                number[key] = bound
        units = ", ".join(self.accepted_units)
        text = f"{self.dimension.replace('_', ' ')} [{self.unit}]: a number in {self.unit}"
        if units:
            text += f" or a string with one of the units {units}"
        if self.rules():
            text += f"; must be {' and '.join(self.rules())}"
        return {"anyOf": [number, {"type": "string"}], "description": text}
