"""The embedded physics-based synthetic Rhineland scenario, written in the EGMS L3 CSV format.

>>> from insarcast.synth import preset, write_scenario
>>> outputs = write_scenario(preset("tiny", seed=1), "out/tiny", progress=False)  # doctest: +SKIP

Modules: :mod:`.config` (typed config), :mod:`.presets` (tiny, demo, rhineland),
:mod:`.geometry` (mine, fault and lake frames), :mod:`.physics` (Knothe troughs, fault creep,
regional bowl, seasonality), :mod:`.noise` (seeded streams, fractal atmosphere, white noise),
:mod:`.coverage` (where the points are), :mod:`.quality` (EGMS quality columns),
:mod:`.zones` (GeoJSON) and :mod:`.scenario` (:func:`write_scenario`).
"""

from .config import FaultConfig, MineConfig, ScenarioConfig, WaterBody
from .physics import (
    fault_displacement,
    knothe_rectangle,
    knothe_time,
    mine_displacement,
    regional_displacement,
    seasonal_displacement,
    truth_displacement,
)
from .presets import PRESETS, preset
from .scenario import CONFIG_NAME, TRUTH_NAME, ZONES_NAME, ScenarioOutputs, load_config, write_scenario

__all__ = [
    "CONFIG_NAME",
    "PRESETS",
    "TRUTH_NAME",
    "ZONES_NAME",
    "FaultConfig",
    "MineConfig",
    "ScenarioConfig",
    "ScenarioOutputs",
    "WaterBody",
    "fault_displacement",
    "knothe_rectangle",
    "knothe_time",
    "load_config",
    "mine_displacement",
    "preset",
    "regional_displacement",
    "seasonal_displacement",
    "truth_displacement",
    "write_scenario",
]
