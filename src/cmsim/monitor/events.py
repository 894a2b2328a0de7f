"""Typed records of the monitor: what it logs and the alarms that hold diversion windows open.

The monitor's pieces (phases, alarm windows, control charts) append :class:`MonitorEvent`
objects; :class:`~cmsim.monitor.line_monitor.LineMonitor` turns them into the plain records of
the run's event log (``{time_s, type, source, data}``) only at that boundary. Nothing reads a
string back to learn what an event or an alarm is.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

__all__ = ["Alarm", "EventKind", "MonitorEvent", "WindowKind"]


class EventKind(StrEnum):
    """Types of the monitor's event-log records (the value is the record's ``type``)."""

    ALARM = "alarm"
    ALARM_CLEARED = "alarm_cleared"
    SPC_SIGNAL = "spc_signal"
    MSPC_TRAINED = "mspc_trained"
    STATE_OF_CONTROL = "state_of_control"
    FEED_STOP = "feed_stop"
    FEED_RESTART = "feed_restart"
    DIVERSION = "diversion"


class WindowKind(StrEnum):
    """Which residence-time distribution places an alarm's window at the gate."""

    #: feeder to gate (method B: a feeder deviation)
    FEEDER_TO_GATE = "B"
    #: probe to gate (a PAT reading or an innovation-chart signal)
    PROBE_TO_GATE = "PAT"


@dataclass(frozen=True)
class MonitorEvent:
    """One record of the monitor.

    Attributes
    ----------
    time_s : float
        When it happened [s].
    kind : EventKind
        What happened.
    data : mapping
        Details (plain JSON values).
    source : str, optional
        Who logs it (default: the monitor's name).
    """

    time_s: float
    kind: EventKind
    data: Mapping[str, Any] = field(default_factory=dict)
    source: str | None = None

    def record(self, source: str) -> dict[str, Any]:
        """The event-log record ``{time_s, type, source, data}`` (``source`` when the event
        names none)."""
        return {"time_s": float(self.time_s), "type": self.kind.value,
                "source": self.source or source, "data": dict(self.data)}


@dataclass(frozen=True)
class Alarm:
    """An open alarm and the window it holds open.

    Attributes
    ----------
    key : str
        Identifier of this alarm instance (``"<trigger>#<n>"``, shown in the audit records).
    trigger : str
        What raised it (``"feeder:<index>"``, ``"pat_oos"``, ``"model_mismatch"``, a chart).
    window : WindowKind
        Which RTD places its window at the gate.
    first_s : float
        When its evidence began [s].
    decided_s : float
        When it was raised [s].
    """

    key: str
    trigger: str
    window: WindowKind
    first_s: float
    decided_s: float
