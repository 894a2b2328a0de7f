"""The small line shared by the API and output-directory tests."""

from __future__ import annotations

from typing import Any


def small_line(name: str = "api-test") -> dict[str, Any]:
    """A 6 min line of two feeders with an API stop (100-108 s) and a refill of the API
    with lot B at 150 s, as a scenario dict."""
    return {
        "name": name,
        "simulation": {"duration": "6 min", "dt": "1 s", "seed": 4},
        "feeders": [
            {"name": "api", "material": "API", "role": "api", "mass_flow": "2 kg/h",
             "noise_rsd": 0.02},
            {"name": "mcc", "material": "MCC", "mass_flow": "18 kg/h"},
        ],
        "blender": {"rtd": {"model": "tanks_in_series", "mean_residence_time": "60 s",
                            "n_tanks": 5}},
        "press": {"transfer_rtd": {"model": "pfr", "delay": "10 s"},
                  "feed_frame_rtd": {"model": "cstr", "mean_residence_time": "30 s"},
                  "tablet_mass": "250 mg"},
        "disturbances": [
            {"type": "feeder_stop", "feeder": "api", "start": "100 s", "duration": "8 s"},
            {"type": "refill", "feeder": "api", "start": "150 s", "lot": "B"},
        ],
    }
