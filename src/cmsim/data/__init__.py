"""Data shipped with cmsim: parameter sets (``models/``) and example scenarios (``scenarios/``).

Find them with :mod:`importlib.resources`, e.g.
``importlib.resources.files("cmsim.data") / "scenarios" / "baseline.toml"``, or use
:func:`cmsim.config.shipped_scenarios`. The top-level ``models/`` and ``scenarios/`` folders
of the repository hold identical user-facing copies.
"""
