"""Pydantic models of the scenario file (TOML, contract v1; docs/scenario-reference.md).

Every model mirrors the TOML exactly: field names are the TOML keys, unknown keys are errors
(``extra="forbid"``), and quantities are converted to SI floats by :mod:`cmsim.units` (seconds
[s], kilograms [kg], [kg/s], fractions [-], speeds in [rpm]). Range checks on single fields live
here; rules that relate several fields (references to feeder names, ``dt <= duration``, exactly
one API feeder, ...) are collected by :func:`cross_field_problems` so that the loader can report
every problem of a file at once, each with its field path.

Use :func:`cmsim.config.load_scenario` to read a file; it turns every problem into a
:class:`cmsim.errors.ScenarioError`.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, Literal, Union

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PrivateAttr,
    Strict,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic.json_schema import WithJsonSchema

from cmsim.config.files import (
    find_parameter_set,
    read_parameter_set,
    read_tracer_csv,
    shipped_models_dir,
)
from cmsim.config.problems import format_path, problems_from_validation_error
from cmsim.config.quantity import QuantitySpec
from cmsim.units import SI_UNIT, parse_quantity

__all__ = [
    "AxialDispersionRTD",
    "Blender",
    "BlenderSpeed",
    "CSTRRTD",
    "Control",
    "Diversion",
    "EmpiricalRTD",
    "Feeder",
    "FeederDrift",
    "FeederNoise",
    "FeederStep",
    "FeederStop",
    "Hopper",
    "ModelRefRTD",
    "PAT",
    "PFRRTD",
    "ParameterSet",
    "Press",
    "PressStop",
    "RTDTable",
    "Refill",
    "Scenario",
    "SeriesRTD",
    "Simulation",
    "Specification",
    "TanksInSeriesRTD",
    "cross_field_problems",
    "find_parameter_set",
]


# --------------------------------------------------------------------------- quantities

#: Largest mass flow a scenario may give [kg/s] (100 t/h): far above any continuous tablet line
#: (tens to a few hundred kg/h), so larger values are typing mistakes, not processes.
MAX_MASS_FLOW = 1e5 / 3600.0
_MASS_FLOW_WHY = "; more than 100 t/h is not a tablet line (a unit typed wrong?)"
#: Most tanks of a tanks-in-series RTD: beyond, the RTD is a plug flow for every purpose and
#: the numerics of a series of stages lose accuracy (the bin kernel is a spike).
MAX_TANKS = 1e5
_TANKS_WHY = "; beyond, use model = \"pfr\" (the RTD is a plug flow)"


def _bound_text(bound: float, dim: str) -> str:
    unit = SI_UNIT[dim]
    return f"{bound:g}" if unit in ("1", "") else f"{bound:g} {unit}"


def _quantity_checker(
    dim: str, gt: float | None, ge: float | None, lt: float | None, le: float | None,
    why: str = "",
) -> Callable[[Any], float]:
    conds = []
    if gt is not None:
        conds.append(f"> {_bound_text(gt, dim)}")
    if ge is not None:
        conds.append(f">= {_bound_text(ge, dim)}")
    if lt is not None:
        conds.append(f"< {_bound_text(lt, dim)}")
    if le is not None:
        conds.append(f"<= {_bound_text(le, dim)}")

    def check(value: Any) -> float:
        x = parse_quantity(value, dim)
        ok = (
            (gt is None or x > gt)
            and (ge is None or x >= ge)
            and (lt is None or x < lt)
            and (le is None or x <= le)
        )
        if not ok:
            got = "" if isinstance(value, int | float) else f" (is {_bound_text(x, dim)} in SI)"
            raise ValueError(f"must be {' and '.join(conds)}{got}{why}")
        return x

    return check


def Q(  # noqa: N802 - reads like a type in annotations
    dim: str,
    *,
    gt: float | None = None,
    ge: float | None = None,
    lt: float | None = None,
    le: float | None = None,
    why: str = "",
) -> Any:
    """Annotated float type for a quantity of dimension ``dim`` with optional bounds (in SI).

    ``why`` is appended to the message of a broken bound (e.g. why a bound is physical).
    """
    spec = QuantitySpec(dim, gt=gt, ge=ge, lt=lt, le=le)  # read by the reference and schema
    return Annotated[
        float,
        BeforeValidator(_quantity_checker(dim, gt, ge, lt, le, why)),
        WithJsonSchema(spec.json_schema()),
        spec,
    ]


def _check_name(value: str) -> str:
    if not value or value != value.strip() or "." in value:
        raise ValueError(
            "must be a non-empty name without '.' or leading/trailing spaces "
            "(names become column names such as fraction.<material>)"
        )
    return value


Name = Annotated[str, Strict(), AfterValidator(_check_name)]
StrictInt = Annotated[int, Strict()]
StrictBool = Annotated[bool, Strict()]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_default=False)


# --------------------------------------------------------------------------- RTD tables


def _base_dir(info: ValidationInfo) -> Path:
    ctx = info.context or {}
    base = ctx.get("base_dir")
    return Path(base) if base is not None else Path.cwd()


class _RTDBase(_Strict):
    """Common key of every RTD table.

    Attributes
    ----------
    model : str
        Kind of RTD model (selects the table).
    """

    def build(self) -> Any:  # pragma: no cover - overridden
        """Return the :mod:`cmsim.rtd` model object."""
        raise NotImplementedError

    def resolved_dict(self) -> dict[str, Any]:
        """Return the table as plain JSON data with references resolved (for hashing)."""
        return self.model_dump(mode="json")

    def portable_dict(self) -> dict[str, Any]:
        """Plain data that loads from any directory: named parameter sets expanded, tracer
        files by absolute path."""
        return self.model_dump(mode="json")


class CSTRRTD(_RTDBase):
    """Continuous stirred tank: ``model = "cstr"``.

    Attributes
    ----------
    mean_residence_time : float
        Mean residence time tau [s], > 0.
    """

    model: Literal["cstr"]
    mean_residence_time: Q("time", gt=0)

    def build(self) -> Any:
        """Return ``cmsim.rtd.CSTR``."""
        from cmsim import rtd

        return rtd.CSTR(mean_residence_time=self.mean_residence_time)


class PFRRTD(_RTDBase):
    """Plug flow (pure delay): ``model = "pfr"``.

    Attributes
    ----------
    delay : float
        Delay (every particle stays exactly this long) [s], >= 0.
    """

    model: Literal["pfr"]
    delay: Q("time", ge=0)

    def build(self) -> Any:
        """Return ``cmsim.rtd.PFR``."""
        from cmsim import rtd

        return rtd.PFR(delay=self.delay)


class TanksInSeriesRTD(_RTDBase):
    """Tanks in series: ``model = "tanks_in_series"``.

    Attributes
    ----------
    mean_residence_time : float
        Total mean residence time [s], > 0.
    n_tanks : float
        Number of tanks [-], real, > 0 and <= 1e5.
    """

    model: Literal["tanks_in_series"]
    mean_residence_time: Q("time", gt=0)
    n_tanks: Q("dimensionless", gt=0, le=MAX_TANKS, why=_TANKS_WHY)

    def build(self) -> Any:
        """Return ``cmsim.rtd.TanksInSeries``."""
        from cmsim import rtd

        return rtd.TanksInSeries(
            mean_residence_time=self.mean_residence_time, n_tanks=self.n_tanks
        )


class AxialDispersionRTD(_RTDBase):
    """Axial dispersion: ``model = "axial_dispersion"``.

    Attributes
    ----------
    mean_residence_time : float
        Space time tau = L/u [s], > 0: the mean residence time for ``boundary = "closed"``;
        for ``"open"`` the mean is tau (1 + 2/Pe).
    peclet : float
        Peclet number [-], > 0.
    boundary : {"closed", "open"}
        Boundary conditions (default ``"closed"``).
    """

    model: Literal["axial_dispersion"]
    mean_residence_time: Q("time", gt=0)
    peclet: Q("dimensionless", gt=0)
    boundary: Literal["closed", "open"] = "closed"

    def build(self) -> Any:
        """Return ``cmsim.rtd.AxialDispersion``."""
        from cmsim import rtd

        return rtd.AxialDispersion(
            mean_residence_time=self.mean_residence_time,
            peclet=self.peclet,
            boundary=self.boundary,
        )


class EmpiricalRTD(_RTDBase):
    """Tabulated tracer response: ``model = "empirical"``.

    Attributes
    ----------
    file : str
        CSV path, relative to the scenario (or parameter-set) file, with columns ``t`` [s] and
        ``e`` [1/s]. The data are read at validation and kept in the object, so a validated
        scenario pickles and builds without the file.
    """

    model: Literal["empirical"]
    file: Annotated[str, Strict()]
    _path: Path | None = PrivateAttr(default=None)
    _t: tuple[float, ...] = PrivateAttr(default=())
    _e: tuple[float, ...] = PrivateAttr(default=())

    @field_validator("file")
    @classmethod
    def _file_readable(cls, value: str, info: ValidationInfo) -> str:
        path = Path(value)
        if not path.is_absolute():
            path = _base_dir(info) / path
        read_tracer_csv(path)
        return value

    @model_validator(mode="after")
    def _load(self, info: ValidationInfo) -> EmpiricalRTD:
        path = Path(self.file)
        if not path.is_absolute():
            path = _base_dir(info) / path
        self._path = path.resolve()
        self._t, self._e = read_tracer_csv(path)
        return self

    @property
    def t(self) -> tuple[float, ...]:
        """Tabulated times [s]."""
        return self._t

    @property
    def e(self) -> tuple[float, ...]:
        """Tabulated E(t) [1/s] as read (the RTD model normalises it)."""
        return self._e

    @property
    def path(self) -> Path | None:
        """Resolved path of the CSV file read at validation."""
        return self._path

    def build(self) -> Any:
        """Return ``cmsim.rtd.Empirical`` built from the data read at validation."""
        import numpy as np

        from cmsim import rtd

        return rtd.Empirical(np.asarray(self._t), np.asarray(self._e))

    def resolved_dict(self) -> dict[str, Any]:
        """Plain data with the SHA-256 of the tabulated data instead of only the file name."""
        data = json.dumps([self._t, self._e], separators=(",", ":")).encode()
        return {"model": "empirical", "file": self.file,
                "data_sha256": hashlib.sha256(data).hexdigest()}

    def portable_dict(self) -> dict[str, Any]:
        """Plain data with the tracer file by its absolute path."""
        return {"model": "empirical", "file": str(self._path or self.file)}


class SeriesRTD(_RTDBase):
    """Stages in series: ``model = "series"``, ``stages = [ {model = ...}, ... ]``.

    Attributes
    ----------
    stages : list of RTD tables
        At least one stage; the RTD is their convolution.
    """

    model: Literal["series"]
    stages: list[RTDTable] = Field(min_length=1)

    def build(self) -> Any:
        """Return ``cmsim.rtd.Series`` of the built stages."""
        from cmsim import rtd

        return rtd.Series(*(s.build() for s in self.stages))

    def resolved_dict(self) -> dict[str, Any]:
        """Plain data with every stage resolved."""
        return {"model": "series", "stages": [s.resolved_dict() for s in self.stages]}

    def portable_dict(self) -> dict[str, Any]:
        """Plain data with every stage portable."""
        return {"model": "series", "stages": [s.portable_dict() for s in self.stages]}


class ModelRefRTD(_RTDBase):
    """A named parameter set: ``model = "model"``, ``name = "blender_tis5_60s"``.

    The file is looked up next to the scenario, in ``models/`` beside or above it, then among
    the parameter sets shipped with cmsim (see :func:`find_parameter_set`).

    Attributes
    ----------
    name : str
        Parameter-set name (file name with or without ``.toml``).
    """

    model: Literal["model"]
    name: Annotated[str, Strict()]
    _resolved: RTDTable | None = PrivateAttr(default=None)
    _path: Path | None = PrivateAttr(default=None)

    @field_validator("name")
    @classmethod
    def _exists(cls, value: str, info: ValidationInfo) -> str:
        path = find_parameter_set(value, _base_dir(info))
        if path is None:
            shipped = shipped_models_dir()
            avail = sorted(p.stem for p in shipped.glob("*.toml")) if shipped else []
            raise ValueError(
                f"no parameter set {value!r} next to the scenario, in models/ or shipped "
                f"with cmsim (shipped: {', '.join(avail)})"
            )
        _load_parameter_set_checked(path, info)
        return value

    @model_validator(mode="after")
    def _resolve(self, info: ValidationInfo) -> ModelRefRTD:
        path = find_parameter_set(self.name, _base_dir(info))
        assert path is not None  # checked by the field validator
        self._path = path.resolve()
        self._resolved = _load_parameter_set_checked(path, info).rtd
        return self

    @property
    def resolved(self) -> RTDTable:
        """The RTD table of the parameter set."""
        assert self._resolved is not None
        return self._resolved

    @property
    def path(self) -> Path | None:
        """Resolved path of the parameter-set file."""
        return self._path

    def build(self) -> Any:
        """Return the :mod:`cmsim.rtd` model of the referenced parameter set."""
        return self.resolved.build()

    def resolved_dict(self) -> dict[str, Any]:
        """Plain data with the referenced parameter set expanded."""
        return {"model": "model", "name": self.name, "resolved": self.resolved.resolved_dict()}

    def portable_dict(self) -> dict[str, Any]:
        """The referenced parameter set's RTD table, spelled out."""
        return self.resolved.portable_dict()


RTDTable = Annotated[
    Union[  # noqa: UP007 - a forward-referenced discriminated union
        CSTRRTD,
        PFRRTD,
        TanksInSeriesRTD,
        AxialDispersionRTD,
        EmpiricalRTD,
        SeriesRTD,
        ModelRefRTD,
    ],
    Field(discriminator="model"),
]


class ParameterSet(_Strict):
    """A parameter-set file in ``models/``: an ``[rtd]`` table and where its numbers come from.

    Attributes
    ----------
    source : str
        Where the numbers come from (literature, measurement, a documented default ...).
    description : str, optional
        Free text.
    rtd : RTD table
        The residence-time distribution.
    """

    source: Annotated[str, Strict(), Field(min_length=1)]
    description: str | None = None
    rtd: RTDTable


def _load_parameter_set_checked(path: Path, info: ValidationInfo) -> ParameterSet:
    from pydantic import ValidationError

    depth = (info.context or {}).get("_depth", 0)
    if depth > 8:
        raise ValueError(f"parameter sets nest more than 8 deep (cycle?) at {path}")
    raw = read_parameter_set(path)
    ctx = {"base_dir": path.parent, "_depth": depth + 1}
    try:
        return ParameterSet.model_validate(raw, context=ctx)
    except ValidationError as exc:
        found = problems_from_validation_error(exc, raw, ParameterSet)
        text = "; ".join(f"{format_path(p)} = {v!r}: {r}" for p, v, r in found)
        raise ValueError(f"parameter set {path} is invalid: {text}") from None


# --------------------------------------------------------------------------- sections


class Simulation(_Strict):
    """``[simulation]``.

    Attributes
    ----------
    duration : float
        Simulated time [s], > 0.
    dt : float
        Time step [s], > 0, <= duration (default 0.5 s).
    seed : int or None
        Root seed of the random streams; None draws fresh entropy.
    initial_state : {"steady", "empty"}
        ``"steady"``: line filled at the nominal steady state at t = 0 (default);
        ``"empty"``: start-up from an empty line.
    trace_epsilon : float
        Lot shares below this are dropped from tracing [-] (default 1e-6).
    """

    duration: Q("time", gt=0)
    dt: Q("time", gt=0) = 0.5
    seed: Annotated[StrictInt, Field(ge=0)] | None = None
    initial_state: Literal["steady", "empty"] = "steady"
    trace_epsilon: Q("dimensionless", gt=0, lt=1) = 1e-6


class Hopper(_Strict):
    """``[feeders.hopper]``: the loss-in-weight hopper and its refill cycle (docs/process.md,
    "Feeder model").

    Attributes
    ----------
    capacity : float
        Hopper capacity [kg], > 0.
    initial : float or None
        Initial powder mass [kg]; None = ``refill_high * capacity``.
    refill_low, refill_high : float
        Refill starts below ``refill_low * capacity`` and fills to ``refill_high * capacity``
        [-] (defaults 0.2 and 0.8).
    refill_rate : float
        Mass flow into the hopper during a refill [kg/s], > 0.
    settle_time : float
        Volumetric hold after a refill ends [s] (default 30 s).
    surge : float
        Relative flow excursion when a refill starts [-] (default 0).
    surge_decay : float
        Time constant of the excursion's exponential decay [s] (default 30 s).
    mixing : {"mixed", "fifo"}
        Hopper mixing for lot tracing (default ``"mixed"``).
    level_coefficient : float
        Level effect kappa: relative feed-factor change per unit fill fraction [-]
        (default 0).
    """

    capacity: Q("mass", gt=0)
    initial: Q("mass", ge=0) | None = None
    refill_low: Q("fraction", gt=0, lt=1) = 0.2
    refill_high: Q("fraction", gt=0, le=1) = 0.8
    refill_rate: Q("mass_flow", gt=0, le=MAX_MASS_FLOW, why=_MASS_FLOW_WHY)
    settle_time: Q("time", ge=0) = 30.0
    surge: Q("fraction", gt=-1) = 0.0
    surge_decay: Q("time", gt=0) = 30.0
    mixing: Literal["mixed", "fifo"] = "mixed"
    level_coefficient: Q("dimensionless") = 0.0


class Feeder(_Strict):
    """``[[feeders]]``: one loss-in-weight feeder per component.

    Attributes
    ----------
    name : str
        Unique feeder name (referenced by disturbances).
    material : str
        Material (component) name, unique across feeders.
    role : {"api", "excipient", "lubricant"}
        Exactly one feeder has role ``"api"`` (default ``"excipient"``).
    mass_flow : float
        Nominal set point [kg/s], > 0.
    lot : str
        Lot id of the initial hopper contents (default ``"L0"``).
    noise_rsd : float
        Relative 1-sigma of the flow noise [-] (default 0): a fraction of the set point, e.g.
        ``0.02`` or ``"2 % of target"`` (``"% w/w"`` is refused here).
    noise_correlation_time : float
        Correlation time of the AR(1) flow noise [s] (default 2 s; 0 = white).
    hopper : Hopper or None
        Hopper and refill cycle; None = an ideal source that never runs empty.
    """

    name: Name
    material: Name
    role: Literal["api", "excipient", "lubricant"] = "excipient"
    mass_flow: Q("mass_flow", gt=0, le=MAX_MASS_FLOW, why=_MASS_FLOW_WHY)
    lot: Name = "L0"
    noise_rsd: Q("relative", ge=0, lt=1) = 0.0
    noise_correlation_time: Q("time", ge=0) = 2.0
    hopper: Hopper | None = None


class Blender(_Strict):
    """``[blender]``.

    Attributes
    ----------
    rtd : RTD table
        RTD at the nominal speed and flow.
    speed : float or None
        Nominal impeller speed [rpm]; needed by ``blender_speed`` disturbances.
    speed_exponent : float
        beta in tau proportional to speed^-beta [-], in [0, 5] (default 0.5).
    """

    rtd: RTDTable
    speed: Q("speed", gt=0) | None = None
    speed_exponent: Q("dimensionless", ge=0, le=5,
                      why="; a residence time falling faster than speed^-5 is likely a "
                      "typo") = 0.5


class Press(_Strict):
    """``[press]``.

    Attributes
    ----------
    transfer_rtd : RTD table
        Blender outlet to feed frame (chute, press hopper).
    feed_frame_rtd : RTD table
        Feed frame to the dies.
    tablet_mass : float
        Target tablet mass [kg], > 0.
    gate_delay : float
        Diverter actuation delay [s] (default 0.5 s).
    """

    transfer_rtd: RTDTable
    feed_frame_rtd: RTDTable
    tablet_mass: Q("mass", gt=0)
    gate_delay: Q("time", ge=0) = 0.5


class Specification(_Strict):
    """``[specification]``.

    Attributes
    ----------
    api_content_limits : (float, float)
        Lower and upper limit of API content as fractions of target [-], lo < 1 < hi
        (default (0.95, 1.05)).
    """

    api_content_limits: tuple[Q("fraction", ge=0), Q("fraction", gt=0)] = (0.95, 1.05)

    @field_validator("api_content_limits")
    @classmethod
    def _ordered(cls, value: tuple[float, float]) -> tuple[float, float]:
        lo, hi = value
        if not lo < 1.0 < hi:
            raise ValueError("must be [lo, hi] fractions of target with lo < 1 < hi")
        return value


class PAT(_Strict):
    """``[pat]``: the in-line NIR measurement (docs/monitor.md, "NIR measurement model").

    Attributes
    ----------
    location : {"blender_outlet", "feed_frame"}
        Probe position (default ``"blender_outlet"``).
    sample_period : float
        Time between predictions [s] (default 2 s).
    noise_sd : float
        Prediction noise, 1-sigma, absolute mass fraction [-] (default 0), e.g. ``0.002`` or
        ``"0.2 % w/w"`` (``"% of target"`` is refused here).
    latency : float
        Delay from the end of integration to the reading [s] (default 2 s).
    integration_time : float
        Averaging window of one reading [s] (default 1 s).
    dropout_probability : float
        Probability that a reading is missing [-], in [0, 1) (default 0).
    bias : float
        Constant calibration offset, absolute mass fraction [-] (default 0).
    drift_per_h : float
        Linear drift of the offset, absolute mass fraction per hour [1/h] (default 0).
    """

    location: Literal["blender_outlet", "feed_frame"] = "blender_outlet"
    sample_period: Q("time", gt=0) = 2.0
    noise_sd: Q("mass_fraction", ge=0) = 0.0
    latency: Q("time", ge=0) = 2.0
    integration_time: Q("time", gt=0) = 1.0
    dropout_probability: Q("fraction", ge=0, lt=1) = 0.0
    bias: Q("dimensionless") = 0.0
    drift_per_h: Q("dimensionless") = 0.0


class Diversion(_Strict):
    """``[diversion]``: how triggers become diversion windows (docs/monitor.md).

    Attributes
    ----------
    quantile : float
        alpha of method B: RTD quantiles t_alpha and t_(1-alpha) [-], in (0, 0.5)
        (default 0.005).
    margin : float
        Margin added at both ends of a window [s] (default 2 s).
    start_up : bool, optional
        Divert start-up material until the state of control is reached (default: true when
        ``simulation.initial_state = "empty"``).
    start_up_quantile : float
        Line RTD quantile that must have passed since feeding began before the state of
        control can be reached [-] (default 0.999).
    rtd_uncertainty : float
        Relative +- uncertainty of all residence times [-], in [0, 1) (default 0): windows
        cover the envelope of the RTDs scaled by 1 - u and 1 + u (margins for RTD uncertainty);
        the risk policy adds the timing error u x MRT x |dc/dt| to the content uncertainty.
    policy : {"risk", "quantile"}
        How gate ticks are chosen (default "risk"): "risk" diverts a tick when the probability
        that its content is outside the limits, given the plant signals, exceeds
        ``max_risk``; "quantile" opens RTD-quantile (method B) and PAT windows on feeder
        deviations, NIR readings out of limits and innovation-chart signals. The rule-based
        monitor of cmsim 0.1 (``"rules"``) was retired: such a file is refused with a
        message naming the two policies that replace it.
    max_risk : float
        Largest accepted probability that a tablet's content is outside the limits [-], in
        (0, 0.5) (default 0.001).
    """

    quantile: Q("fraction", gt=0, lt=0.5) = 0.005
    margin: Q("time", ge=0) = 2.0
    start_up: bool | None = None
    start_up_quantile: Q("fraction", gt=0.5, lt=1) = 0.999
    rtd_uncertainty: Q("fraction", ge=0, lt=1) = 0.0
    policy: Literal["risk", "quantile"] = "risk"
    max_risk: Q("fraction", gt=0, lt=0.5) = 1e-3

    @field_validator("policy", mode="before")
    @classmethod
    def _retired_policy(cls, value: Any) -> Any:
        if value == "rules":
            raise ValueError(
                "the rule-based monitor of cmsim 0.1 (policy = 'rules') was retired; use "
                "'quantile' (RTD-quantile and PAT windows, closest to it) or 'risk' (the "
                "default); its [monitor] chart keys act under both (docs/monitor.md)")
        return value


class MonitorRTD(_Strict):
    """``[monitor.rtd]``: the RTDs the monitor was characterised with, where they differ from
    the line's (e.g. a tracer study's fit); a table left out is the line's own.

    The simulated line always runs ``blender.rtd`` and ``press.*_rtd``: with these tables the
    monitor works with a model that is off by a known amount, which is how its robustness
    to RTD characterisation error (and the margin of ``diversion.rtd_uncertainty``) is
    tested.

    Attributes
    ----------
    blender, transfer, feed_frame : RTD table, optional
        The monitor's blender (at the nominal speed), transfer and feed-frame RTDs.
    """

    blender: RTDTable | None = None
    transfer: RTDTable | None = None
    feed_frame: RTDTable | None = None


class Monitor(_Strict):
    """``[monitor]``: the PAT monitor's instruments, estimator and rules (docs/monitor.md).

    Attributes
    ----------
    persistence : int
        Consecutive NIR readings outside the limits that open a PAT window (quantile policy)
        (default 3).
    clear_readings : int
        Consecutive in-limit readings that clear a PAT alarm and qualify the start-up; NIR
        sample periods a model-mismatch or chart signal keeps the line out of the state of
        control (default 3).
    pat_grace : float
        Longest time without a valid NIR reading before the line is out of the state of
        control [s] (default 10 s); it diverts nothing by itself (without readings the
        estimator's uncertainty, hence the risk, grows).
    action_limits : (float, float), optional
        Content limits of the monitor as fractions of target (default: the specification
        limits).
    shewhart, ewma, cusum : bool
        Control charts on the estimator's standardised innovations (default off).
    chart_sigma : float
        Accepted for scenario files of cmsim 0.1 and ignored: the charts run on standardised
        innovations, whose sigma is 1 by construction (the NIR noise enters through
        ``pat.noise_sd``).
    shewhart_L, ewma_lambda, ewma_L, cusum_k, cusum_h : float
        Chart parameters in innovation sigmas (defaults 3; 0.2, 2.86; 0.5, 5: in-control
        ARL 370, about 360 (exact limits from each restart) and 465 readings).
    mspc : bool
        PCA monitoring (T^2, Q) of the innovation and the feeders' load-cell flow residuals
        (default off).
    mspc_training : (float, float)
        Training interval of the PCA model in this run [s] (required with ``mspc``).
    mspc_alpha : float
        False-alarm probability of the T^2 and Q limits [-] (default 0.001).
    soft_sensor : bool
        Accepted for scenario files of cmsim 0.1 and ignored: the line-state estimator, which
        always runs, is the monitor's soft sensor.
    feeder_trigger : bool
        Feeder deviation trigger of the quantile policy (method B windows) (default on; the
        risk policy has no trigger to switch).
    feeder_deviation : float
        Relative deviation of a feeder flow from its reference that counts [-] (default 20 %).
    feeder_persistence : float
        How long the deviation must last [s] (default 1 s).
    load_cell_period, load_cell_noise, load_cell_window : float
        Load-cell weighing period [s] (0: off; default 1 s), noise [kg] (default 0), flow
        window [s] (default 10 s).
    tablet_weight_period, tablet_weight_rsd : float
        Accepted for scenario files of cmsim 0.1 and ignored: the monitor samples no tablet
        weights.
    chart_action : {"warn", "divert"}
        What a chart signal does: "warn" (default) logs it (``spc_signal``) and takes the line
        out of the state of control; "divert" also opens a PAT diversion window (both
        policies).
    feeder_reference : {"nominal", "set_point"}
        What the quantile policy's feeder trigger compares a flow with: the scenario's
        nominal flow (default) or the feeder's current set point (set-point changes by an
        operator or controller are then no fault).
    model_sd : float, optional
        Standard deviation of the line-state estimator's model error at the probe, fraction
        of target [-] (default: computed from the feeders' noise and the load cells).
    lot_assay_sd : float
        Standard deviation of a new API lot's relative potency assumed by the estimator [-]
        (default 10 %: wide enough that a wrong or mislabelled lot is judged by the NIR,
        not by the prior).
    fault_sd : float
        Standard deviation added to the model error when the innovation chart signals,
        fraction of target [-] (default 5 %).
    innovation_cusum_k, innovation_cusum_h : float
        CUSUM on the estimator's standardised innovations: reference value and decision
        interval [-] (defaults 0.5 and 8: in-control ARL about 10,000 readings).
    innovation_shewhart_L : float
        Shewhart limit on the standardised innovations [-] (default 0: off).
    rtd : MonitorRTD, optional
        The RTDs the monitor was characterised with (``[monitor.rtd]``; default: the line's).
    """

    persistence: Annotated[int, Strict(), Field(ge=1)] = 3
    clear_readings: Annotated[int, Strict(), Field(ge=1)] = 3
    pat_grace: Q("time", ge=0) = 10.0
    action_limits: tuple[Q("fraction", ge=0), Q("fraction", gt=0)] | None = None
    shewhart: bool = False
    ewma: bool = False
    cusum: bool = False
    chart_sigma: Q("fraction", ge=0) = 0.0
    shewhart_L: Q("dimensionless", gt=0) = 3.0  # noqa: N815
    ewma_lambda: Q("fraction", gt=0, le=1) = 0.2
    ewma_L: Q("dimensionless", gt=0) = 2.86  # noqa: N815
    cusum_k: Q("dimensionless", ge=0) = 0.5
    cusum_h: Q("dimensionless", gt=0) = 5.0
    mspc: bool = False
    mspc_training: tuple[Q("time", ge=0), Q("time", gt=0)] | None = None
    mspc_alpha: Q("fraction", gt=0, lt=0.5) = 0.001
    soft_sensor: bool = True
    feeder_trigger: bool = True
    feeder_deviation: Q("fraction", gt=0) = 0.2
    feeder_persistence: Q("time", ge=0) = 1.0
    load_cell_period: Q("time", ge=0) = 1.0
    load_cell_noise: Q("mass", ge=0) = 0.0
    load_cell_window: Q("time", gt=0) = 10.0
    tablet_weight_period: Q("time", ge=0) = 10.0
    tablet_weight_rsd: Q("fraction", ge=0) = 0.0
    chart_action: Literal["warn", "divert"] = "warn"
    feeder_reference: Literal["nominal", "set_point"] = "nominal"
    model_sd: Q("fraction", gt=0) | None = None
    lot_assay_sd: Q("fraction", ge=0) = 0.1
    fault_sd: Q("fraction", ge=0) = 0.05
    innovation_cusum_k: Q("dimensionless", ge=0) = 0.5
    innovation_cusum_h: Q("dimensionless", gt=0) = 8.0
    innovation_shewhart_L: Q("dimensionless", ge=0) = 0.0  # noqa: N815
    rtd: MonitorRTD | None = None

    @model_validator(mode="after")
    def _mspc_needs_training(self) -> Monitor:
        if self.mspc and self.mspc_training is None:
            raise ValueError("mspc = true needs mspc_training = [start, end]")
        if self.mspc_training is not None and not self.mspc_training[0] < \
                self.mspc_training[1]:
            raise ValueError("mspc_training must be [start, end] with start < end")
        if self.action_limits is not None and not self.action_limits[0] < 1.0 < \
                self.action_limits[1]:
            raise ValueError("action_limits must be [lo, hi] fractions of target, lo < 1 < hi")
        return self


# --------------------------------------------------------------------------- control


class FeederPIControl(_Strict):
    """``[control.feeder_pi]``: gravimetric PI loop of the feeders (docs/control.md).

    Attributes
    ----------
    feeders : list of str or None
        Feeders with the PI loop (default: all); the others keep the ideal loop.
    gain : float
        PI gain on the flow error relative to the feed factor [-] (default 0.3).
    integral_time : float
        PI integral time [s] (default 1 s).
    period : float or None
        Update period [s], a whole number of ticks (default: dt).
    window : float
        Load-cell regression window [s] (default 5 s).
    load_cell_noise : float
        Reading noise per tick, 1 sigma [kg] (default 0.1 g).
    nominal_speed : float
        Screw speed at the nominal set point [rev/s] (default 1).
    max_speed : float or None
        Upper screw-speed clamp [rev/s] (default 3 x nominal_speed).
    adapt_time : float
        Feed-factor adaptation time of the feed-forward [s] (default 0 = none).
    """

    feeders: list[Name] | None = None
    gain: Q("dimensionless", gt=0) = 0.3
    integral_time: Q("time", gt=0) = 1.0
    period: Q("time", gt=0) | None = None
    window: Q("time", gt=0) = 5.0
    load_cell_noise: Q("mass", ge=0) = 1e-4
    nominal_speed: Q("dimensionless", gt=0) = 1.0
    max_speed: Q("dimensionless", gt=0) | None = None
    adapt_time: Q("time", ge=0) = 0.0


class RatioControl(_Strict):
    """``[control.ratio]``: follower set points track the measured master flow.

    Attributes
    ----------
    master : str or None
        Master feeder (default: the API feeder).
    followers : list of str or None
        Followers (default: every other feeder).
    """

    master: Name | None = None
    followers: list[Name] | None = None


class _LoopTuning(_Strict):
    gain: Q("dimensionless", gt=0) | None = None
    integral_time: Q("time", gt=0) | None = None
    closed_loop_time: Q("time", gt=0) | None = None


class NIRFeedbackControl(_LoopTuning):
    """``[control.nir_feedback]``: PI from the NIR API reading to the API set point.

    Attributes
    ----------
    gain, integral_time : float or None
        PI settings [-], [s]; None = SIMC/IMC tuning from the RTD to the probe.
    closed_loop_time : float or None
        tau_c of the tuning rule [s] (default: the model dead time).
    latency, integration_time, noise_sd : float or None
        NIR model [s], [s], [-] (absolute mass fraction); None = from ``[pat]``
        (or 2 s, 1 s, 0 without it).
    """

    latency: Q("time", ge=0) | None = None
    integration_time: Q("time", gt=0) | None = None
    noise_sd: Q("mass_fraction", ge=0) | None = None


class FeedforwardControl(_LoopTuning):
    """``[control.feedforward]``: PI on the RTD-predicted blender-outlet API fraction.

    Attributes
    ----------
    gain, integral_time : float or None
        PI settings [-], [s]; None = SIMC/IMC tuning from the blender RTD.
    closed_loop_time : float or None
        tau_c of the tuning rule [s] (default: the model dead time).
    """


ControlStrategy = Literal["feeder_pi", "ratio", "nir_feedback", "feedforward"]


class Control(_Strict):
    """``[control]``: control strategies of the line (docs/control.md), any combination.

    Attributes
    ----------
    strategy : list of str
        Any of ``"feeder_pi"``, ``"ratio"``, ``"nir_feedback"``, ``"feedforward"`` (no
        repeats; may be empty).
    period : float
        Period of the supervisory loops (ratio, NIR, feedforward) [s], a whole number of
        ticks (default 2 s).
    output_limit : float
        Largest relative correction of the API set point (or ratio) [-] (default 0.3).
    load_cell_noise : float
        Load-cell reading noise for feeders without the PI loop [kg] (default 0.1 g).
    load_cell_window : float
        Their regression window [s] (default 5 s).
    feeder_pi, ratio, nir_feedback, feedforward
        Parameters of each strategy (defaults apply when a table is absent).
    """

    strategy: list[ControlStrategy] = Field(default_factory=list)
    period: Q("time", gt=0) = 2.0
    output_limit: Q("fraction", gt=0, lt=1) = 0.3
    load_cell_noise: Q("mass", ge=0) = 1e-4
    load_cell_window: Q("time", gt=0) = 5.0
    feeder_pi: FeederPIControl = Field(default_factory=FeederPIControl)
    ratio: RatioControl = Field(default_factory=RatioControl)
    nir_feedback: NIRFeedbackControl = Field(default_factory=NIRFeedbackControl)
    feedforward: FeedforwardControl = Field(default_factory=FeedforwardControl)

    @field_validator("strategy")
    @classmethod
    def _unique(cls, value: list[str]) -> list[str]:
        seen = [s for i, s in enumerate(value) if s in value[:i]]
        if seen:
            raise ValueError(f"lists {seen[0]!r} twice; each strategy at most once")
        return value


def _whole_ticks(x: Any, dt: float | None) -> bool:
    if x is None or dt is None or not dt > 0:  # a bad dt is reported on its own field
        return True
    return abs(round(x / dt) * dt - x) <= 1e-9 * max(1.0, x) and round(x / dt) >= 1


def _control_problems(raw: dict[str, Any], names: list[str],
                      dt: float | None) -> list[tuple[str, Any, str]]:
    """Cross-field rules of ``[control]``: feeder references and periods in whole ticks."""
    ctl = raw.get("control")
    if not isinstance(ctl, dict):
        return []
    out: list[tuple[str, Any, str]] = []
    known = ", ".join(names) or "-"

    def ref(path: str, value: Any) -> None:
        if isinstance(value, str) and names and value not in names:
            out.append((path, value, f"no feeder of that name (feeders: {known})"))

    for key in ("feeder_pi", "ratio"):
        sub = ctl.get(key)
        if not isinstance(sub, dict):
            continue
        lst = sub.get("feeders" if key == "feeder_pi" else "followers")
        if isinstance(lst, list):
            for j, name in enumerate(lst):
                ref(f"control.{key}.{'feeders' if key == 'feeder_pi' else 'followers'}[{j}]",
                    name)
        if key == "ratio":
            ref("control.ratio.master", sub.get("master"))
            master = sub.get("master")
            if master is None:  # default: the API feeder
                feeders = raw.get("feeders") if isinstance(raw.get("feeders"), list) else []
                master = next((f.get("name") for f in feeders if isinstance(f, dict)
                               and f.get("role") == "api"), None)
            if isinstance(lst, list) and master is not None and master in lst:
                out.append(("control.ratio.followers", lst,
                            f"must not contain the master feeder {master!r}"))
    nir = ctl.get("nir_feedback")
    if isinstance(nir, dict) and isinstance(raw.get("pat"), dict):
        for field in ("latency", "integration_time", "noise_sd"):
            if nir.get(field) is not None:
                out.append((f"control.nir_feedback.{field}", nir[field],
                            "not allowed when a [pat] table exists: the loop then reads the PAT "
                            "sensor, configure the sensor in [pat]"))
    for path, value in (("control.period", ctl.get("period")),
                        ("control.feeder_pi.period", (ctl.get("feeder_pi") or {}).get("period")
                         if isinstance(ctl.get("feeder_pi"), dict) else None)):
        x = _num(value, "time")
        if x is not None and x > 0 and not _whole_ticks(x, dt):
            out.append((path, value, f"must be a whole number of ticks (simulation.dt = "
                                      f"{_fmt_time(dt)})"))
    return out


# --------------------------------------------------------------------------- disturbances


class _Disturbance(_Strict):
    """Common keys of every ``[[disturbances]]`` entry.

    Attributes
    ----------
    type : str
        Kind of disturbance (selects the table).
    start : float
        Time the disturbance begins [s], >= 0 and < simulation.duration.
    """

    start: Q("time", ge=0)


class FeederStop(_Disturbance):
    """``type = "feeder_stop"``: the feeder delivers nothing for ``duration`` [s] from ``start``.

    Attributes
    ----------
    feeder : str
        Name of the feeder that stops.
    duration : float
        How long it delivers nothing [s], > 0.
    """

    type: Literal["feeder_stop"]
    feeder: Name
    duration: Q("time", gt=0)


class FeederStep(_Disturbance):
    """``type = "feeder_step"``: new set point ``mass_flow`` [kg/s] from ``start``.

    ``duration`` [s] is optional: absent means until the end of the run.

    Attributes
    ----------
    feeder : str
        Name of the feeder whose set point changes.
    mass_flow : float
        New set point [kg/s], >= 0.
    duration : float, optional
        Time after which the nominal set point returns [s]; absent: until the end of the run.
    """

    type: Literal["feeder_step"]
    feeder: Name
    mass_flow: Q("mass_flow", ge=0, le=MAX_MASS_FLOW, why=_MASS_FLOW_WHY)
    duration: Q("time", gt=0) | None = None


class FeederNoise(_Disturbance):
    """``type = "feeder_noise"``: flow noise RSD [-] becomes ``noise_rsd`` from ``start``.

    Attributes
    ----------
    feeder : str
        Name of the feeder.
    noise_rsd : float
        New relative 1-sigma of the flow noise [-], in [0, 1).
    duration : float, optional
        Time after which the nominal noise returns [s]; absent: until the end of the run.
    """

    type: Literal["feeder_noise"]
    feeder: Name
    noise_rsd: Q("relative", ge=0, lt=1)
    duration: Q("time", gt=0) | None = None


class FeederDrift(_Disturbance):
    """``type = "feeder_drift"``: feed-factor drift of ``rate_per_hour`` [1/h] (e.g. "-2 %").

    With ``volumetric = true`` the feeder is stuck in volumetric mode, so the drift reaches
    the flow; with ``false`` (default) the gravimetric controller compensates it.

    Attributes
    ----------
    feeder : str
        Name of the feeder.
    rate_per_hour : float
        Relative change of the feed factor per hour [1/h], in (-1, 1) (``"-2 %"`` = -2 %/h).
    duration : float, optional
        How long the drift lasts [s]; absent: until the end of the run.
    volumetric : bool
        The feeder is stuck in volumetric mode, so the drift reaches the flow (default false:
        the gravimetric loop compensates it).
    """

    type: Literal["feeder_drift"]
    feeder: Name
    rate_per_hour: Q("fraction", gt=-1, lt=1)
    duration: Q("time", gt=0) | None = None
    volumetric: StrictBool = False


class Refill(_Disturbance):
    """``type = "refill"``: a hopper refill at ``start`` bringing lot ``lot``.

    ``mass`` [kg] is optional (default: up to the hopper's refill_high); ``duration`` [s] is
    the refill time (default 20 s). ``assay`` [-] is the relative potency of an API lot
    (default 1: as labelled): its API counts ``assay`` times in the true content and in what
    the NIR sees; the monitor does not know it.

    Attributes
    ----------
    feeder : str
        Name of the feeder whose hopper is refilled.
    lot : str
        Lot id of the powder charged.
    mass : float, optional
        Mass charged [kg], > 0; absent: up to the hopper's ``refill_high``.
    duration : float
        Time the refill takes [s], > 0 (default 20 s).
    assay : float, optional
        Relative potency of the lot's API [-], in (0, 2]; absent: 1 (as labelled). Counts in
        the true content and in what the NIR sees; the monitor does not know it.
    """

    type: Literal["refill"]
    feeder: Name
    lot: Name
    mass: Q("mass", gt=0) | None = None
    duration: Q("time", gt=0) = 20.0
    assay: Q("fraction", gt=0, le=2) | None = None


class NIRFault(_Disturbance):
    """``type = "nir_fault"``: a fault of the NIR instrument from ``start`` to ``end``.

    ``kind`` is ``"bias"`` (add ``value``, an absolute mass fraction, e.g. ``"0.5 %"``),
    ``"drift"`` (an offset growing by ``value`` per hour from ``start``), ``"spike"`` (add
    ``value`` to one reading), ``"frozen"`` (repeat the last valid reading) or
    ``"dropout"`` (no readings). ``end`` [s] is optional (absent: until the end of the run).
    The material is not affected: this is a sensor fault.

    Attributes
    ----------
    kind : {"bias", "drift", "spike", "frozen", "dropout"}
        What goes wrong with the readings (see above).
    end : float, optional
        Time the fault ends [s]; absent: until the end of the run.
    value : float
        Size of a ``bias`` or ``spike`` (absolute mass fraction), or of a ``drift`` per hour
        [-] (default 0; unused by ``frozen`` and ``dropout``).
    """

    type: Literal["nir_fault"]
    kind: Literal["bias", "drift", "spike", "frozen", "dropout"]
    end: Q("time", ge=0) | None = None
    value: Q("dimensionless") = 0.0


class BlenderSpeed(_Disturbance):
    """``type = "blender_speed"``: impeller speed becomes ``speed`` [rpm] at ``start``.

    Attributes
    ----------
    speed : float
        New impeller speed [rpm], > 0 (needs ``blender.speed``, the nominal speed).
    """

    type: Literal["blender_speed"]
    speed: Q("speed", gt=0)


class PressStop(_Disturbance):
    """``type = "press_stop"``: the press stops for ``duration`` [s] from ``start``.

    Attributes
    ----------
    duration : float
        How long the press makes no tablets [s], > 0.
    """

    type: Literal["press_stop"]
    duration: Q("time", gt=0)


Disturbance = Annotated[
    FeederStop | FeederStep | FeederNoise | FeederDrift | Refill | BlenderSpeed | PressStop
    | NIRFault,
    Field(discriminator="type"),
]


# --------------------------------------------------------------------------- scenario


class Scenario(_Strict):
    """A validated scenario, all quantities in SI (docs/scenario-reference.md).

    Build it with :func:`cmsim.config.load_scenario`. Validating a dict directly with
    ``Scenario.model_validate(d)`` also runs the cross-field rules but reports them as one
    pydantic error; the loader reports each with its field path.

    Attributes
    ----------
    name : str
        Name of the scenario (shown in outputs).
    description : str, optional
        One line saying what the scenario is about (``cmsim list`` shows it).
    simulation : table
        Duration, time step, seed and initial state.
    feeders : array of tables
        One loss-in-weight feeder per component.
    blender : table
        The continuous blender and its RTD.
    press : table
        Transfer to the press, feed frame and tablets.
    specification : table
        API content limits (default 95-105 % of target).
    pat : table, optional
        In-line NIR measurement; absent: no PAT monitor.
    diversion : table, optional
        Lets the monitor drive the reject gate; absent: nothing is diverted.
    monitor : table, optional
        Monitoring rules; absent: the default rules.
    control : table, optional
        Control strategies; absent: none.
    disturbances : array of tables
        Scheduled disturbances (default none).
    """

    name: Annotated[str, Strict(), Field(min_length=1)]
    description: str | None = None
    simulation: Simulation
    feeders: list[Feeder] = Field(min_length=1)
    blender: Blender
    press: Press
    specification: Specification = Field(default_factory=Specification)
    pat: PAT | None = None
    diversion: Diversion | None = None
    monitor: Monitor | None = None
    control: Control | None = None
    disturbances: list[Disturbance] = Field(default_factory=list)

    _source: str | None = PrivateAttr(default=None)

    @model_validator(mode="after")
    def _cross_fields(self, info: ValidationInfo) -> Scenario:
        if (info.context or {}).get("skip_cross_field"):
            return self
        problems = cross_field_problems(self.to_dict())
        if problems:
            raise ValueError(
                "; ".join(f"{p or '<root>'} = {v!r}: {r}" for p, v, r in problems)
            )
        return self

    # -- identification -----------------------------------------------------------------

    @property
    def source(self) -> Path | None:
        """Path of the file the scenario was read from (None for an in-memory scenario)."""
        return Path(self._source) if self._source else None

    def to_dict(self) -> dict[str, Any]:
        """Return the validated scenario as plain JSON-compatible data in SI.

        Loading the result again (``load_scenario(d, source=scenario.source)``) gives an equal
        scenario.
        """
        return self.model_dump(mode="json")

    def resolved_dict(self) -> dict[str, Any]:
        """Like :meth:`to_dict`, with named parameter sets and tracer files resolved."""
        return self._with_rtd_tables("resolved_dict")

    def portable_dict(self) -> dict[str, Any]:
        """Like :meth:`to_dict`, but loadable from any directory: named parameter sets
        spelled out, tracer files by absolute path (what ``cmsim replay`` stores)."""
        return self._with_rtd_tables("portable_dict")

    def _with_rtd_tables(self, form: str) -> dict[str, Any]:
        """:meth:`to_dict` with every RTD table (the line's and ``[monitor.rtd]``'s) written
        by its method ``form`` (``"resolved_dict"`` or ``"portable_dict"``)."""
        d = self.to_dict()
        tables = [(d["blender"], "rtd", self.blender.rtd),
                  (d["press"], "transfer_rtd", self.press.transfer_rtd),
                  (d["press"], "feed_frame_rtd", self.press.feed_frame_rtd)]
        own = self.monitor.rtd if self.monitor is not None else None
        if own is not None:
            tables += [(d["monitor"]["rtd"], key, getattr(own, key))
                       for key in ("blender", "transfer", "feed_frame")
                       if getattr(own, key) is not None]
        for parent, key, table in tables:
            parent[key] = getattr(table, form)()
        return d

    def canonical_json(self) -> str:
        """Canonical JSON of :meth:`resolved_dict` (sorted keys, no spaces)."""
        return json.dumps(
            self.resolved_dict(), sort_keys=True, separators=(",", ":"), allow_nan=False
        )

    def sha256(self) -> str:
        """SHA-256 (hex) of :meth:`canonical_json`: equal for equal resolved scenarios."""
        return hashlib.sha256(self.canonical_json().encode("utf-8")).hexdigest()

    # -- derived quantities -------------------------------------------------------------

    @property
    def api_feeder(self) -> Feeder:
        """The feeder with role ``"api"``."""
        return next(f for f in self.feeders if f.role == "api")

    def feeder(self, name: str) -> Feeder:
        """Return the feeder called ``name`` (KeyError if none)."""
        for f in self.feeders:
            if f.name == name:
                return f
        raise KeyError(name)

    @property
    def total_mass_flow(self) -> float:
        """Sum of the nominal feeder set points [kg/s]."""
        return math.fsum(f.mass_flow for f in self.feeders)

    @property
    def target_api_fraction(self) -> float:
        """Target API content: API share of the nominal feeder flows [-]."""
        return self.api_feeder.mass_flow / self.total_mass_flow

    @property
    def tablet_rate(self) -> float:
        """Nominal tablets per second [1/s] (total flow / tablet mass)."""
        return self.total_mass_flow / self.press.tablet_mass

    @property
    def n_ticks(self) -> int:
        """Number of time steps, ``round(duration / dt)``."""
        return int(round(self.simulation.duration / self.simulation.dt))


SeriesRTD.model_rebuild()
ModelRefRTD.model_rebuild()
ParameterSet.model_rebuild()
Blender.model_rebuild()
Press.model_rebuild()
Scenario.model_rebuild()


# --------------------------------------------------------------------------- cross-field rules

_FEEDER_DISTURBANCES = {"feeder_stop", "feeder_step", "feeder_noise", "feeder_drift", "refill"}


def _num(value: Any, dim: str) -> float | None:
    try:
        return parse_quantity(value, dim)
    except (ValueError, KeyError):
        return None


def _fmt_time(x: float) -> str:
    return f"{x:g} s"


def _default(model: type[BaseModel], field: str) -> Any:
    """The default of ``model.field``: the one source of a default the cross-field rules
    need for a key that is absent."""
    return model.model_fields[field].get_default(call_default_factory=True)


def cross_field_problems(raw: dict[str, Any]) -> list[tuple[str, Any, str]]:
    """Check the rules that relate several fields of a scenario.

    Works on the raw TOML dict (values that do not parse are skipped: the field validation
    reports them) and on :meth:`Scenario.to_dict` output.

    Parameters
    ----------
    raw : dict
        Scenario data.

    Returns
    -------
    list of (field path, value, rule)
        Empty when every rule holds.
    """
    problems: list[tuple[str, Any, str]] = []
    if not isinstance(raw, dict):
        return problems
    sim = raw.get("simulation") if isinstance(raw.get("simulation"), dict) else {}
    duration = _num(sim.get("duration"), "time") if "duration" in sim else None
    dt_value = sim.get("dt", _default(Simulation, "dt"))
    dt = _num(dt_value, "time")
    if duration is not None and dt is not None and duration > 0 and dt > duration:
        problems.append(("simulation.dt", dt_value,
                         f"must be <= simulation.duration ({_fmt_time(duration)})"))

    feeders = raw.get("feeders") if isinstance(raw.get("feeders"), list) else []
    names: dict[str, int] = {}
    materials: dict[str, int] = {}
    api_idx: list[int] = []
    hopper_of: dict[str, Any] = {}
    for i, f in enumerate(feeders):
        if not isinstance(f, dict):
            continue
        name = f.get("name")
        if isinstance(name, str):
            if name in names:
                problems.append((f"feeders[{i}].name", name,
                                 f"duplicate feeder name (also feeders[{names[name]}].name)"))
            else:
                names[name] = i
                hopper_of[name] = f.get("hopper")
        mat = f.get("material")
        if isinstance(mat, str):
            if mat in materials:
                problems.append((f"feeders[{i}].material", mat,
                                 f"duplicate material (also feeders[{materials[mat]}]"
                                 ".material): one feeder per component"))
            else:
                materials[mat] = i
        if f.get("role") == "api":
            api_idx.append(i)
        hop = f.get("hopper")
        if isinstance(hop, dict):
            high = hop.get("refill_high", _default(Hopper, "refill_high"))
            lo = _num(hop.get("refill_low", _default(Hopper, "refill_low")), "fraction")
            hi = _num(high, "fraction")
            if lo is not None and hi is not None and not lo < hi:
                problems.append((f"feeders[{i}].hopper.refill_high", high,
                                 f"must be > refill_low ({lo:g})"))
            cap = _num(hop.get("capacity"), "mass")
            init = hop.get("initial")
            ini = _num(init, "mass") if init is not None else None
            if cap is not None and ini is not None and ini > cap:
                problems.append((f"feeders[{i}].hopper.initial", init,
                                 f"must be <= capacity ({cap:g} kg)"))
    if feeders and not api_idx:
        roles = [f.get("role", _default(Feeder, "role")) if isinstance(f, dict) else None
                 for f in feeders]
        problems.append(("feeders", roles, "exactly one feeder must have role = \"api\""))
    for i in api_idx[1:]:
        problems.append((f"feeders[{i}].role", "api",
                         f"exactly one feeder may have role = \"api\" (first: feeders"
                         f"[{api_idx[0]}])"))

    blender = raw.get("blender") if isinstance(raw.get("blender"), dict) else {}
    pat = raw.get("pat")
    if isinstance(pat, dict) and "sample_period" in pat and dt is not None:
        sp = _num(pat["sample_period"], "time")
        if sp is not None and sp > 0 and sp < dt:
            problems.append(("pat.sample_period", pat["sample_period"],
                             f"must be >= simulation.dt ({_fmt_time(dt)})"))

    disturbances = raw.get("disturbances") if isinstance(raw.get("disturbances"), list) else []
    for i, d in enumerate(disturbances):
        if not isinstance(d, dict):
            continue
        kind = d.get("type") if isinstance(d.get("type"), str) else None
        if kind in _FEEDER_DISTURBANCES and isinstance(d.get("feeder"), str):
            if d["feeder"] not in names:
                problems.append((f"disturbances[{i}].feeder", d["feeder"],
                                 f"no feeder of that name (feeders: {', '.join(names) or '-'})"))
        start = _num(d.get("start"), "time") if "start" in d else None
        if start is not None and duration is not None and start >= duration:
            problems.append((f"disturbances[{i}].start", d.get("start"),
                             f"must be < simulation.duration ({_fmt_time(duration)})"))
        if kind == "blender_speed" and blender.get("speed") is None:
            problems.append((f"disturbances[{i}].type", kind,
                             "needs the nominal blender.speed [rpm] to scale the blender RTD"))
        if kind == "refill" and isinstance(d.get("feeder"), str) and d["feeder"] in names:
            if hopper_of.get(d["feeder"]) is None and d.get("mass") is not None:
                problems.append((f"disturbances[{i}].mass", d.get("mass"),
                                 f"feeder {d['feeder']!r} has no [feeders.hopper] table; "
                                 "a refill mass needs one"))
        if kind == "nir_fault":
            if not isinstance(pat, dict):
                problems.append((f"disturbances[{i}].type", kind,
                                 "needs a [pat] table (the NIR instrument)"))
            end = _num(d.get("end"), "time") if d.get("end") is not None else None
            if end is not None and start is not None and end < start:
                problems.append((f"disturbances[{i}].end", d.get("end"),
                                 f"must be >= start ({_fmt_time(start)})"))
        if kind == "refill" and d.get("assay") is not None and isinstance(d.get("feeder"), str):
            api_names = [feeders[j].get("name") for j in api_idx[:1]]
            if d["feeder"] not in api_names:
                problems.append((f"disturbances[{i}].assay", d.get("assay"),
                                 "only an API lot has an assay: the feeder must be the API "
                                 f"feeder ({', '.join(map(str, api_names)) or '-'})"))
    problems.extend(_assay_problems(disturbances))
    problems.extend(_control_problems(raw, list(names), dt))
    return problems


def _assay_problems(disturbances: list[Any]) -> list[tuple[str, Any, str]]:
    """A lot has one assay: refills of the same lot must not give different ones."""
    seen: dict[tuple[str, str], tuple[int, float]] = {}
    out = []
    for i, d in enumerate(disturbances):
        if not isinstance(d, dict) or d.get("type") != "refill" or d.get("assay") is None:
            continue
        a = _num(d.get("assay"), "fraction")
        key = (str(d.get("feeder")), str(d.get("lot")))
        if a is None:
            continue
        if key in seen and abs(seen[key][1] - a) > 1e-12:
            out.append((f"disturbances[{i}].assay", d.get("assay"),
                        f"lot {key[1]!r} already has assay {seen[key][1]:g} "
                        f"(disturbances[{seen[key][0]}])"))
        seen.setdefault(key, (i, a))
    return out
