"""Named scenarios at real Rhineland positions (EPSG:3035 metres).

The lignite pits are placed so that the pit at the end of the default period (2021-12-16) is
centred on the mine's position; faults are NW–SE normal faults whose hanging wall is the
south-west side (the Rur graben west of the Rurrand fault, the Erft block west of the Erft fault).

* ``tiny``: 6.4 × 4.8 km, one small active pit (about 2 × 1 km, r = 600 m) and the Rurrand fault;
  for tests, written in about a second.
* ``demo``: 25.6 × 19.2 km around Hambach (active) and Inden (inactive since 2017-01-01), with the
  Rurrand fault and a lake.
* ``rhineland``: the two EGMS tiles E40N30 and E40N31 (100 km × 200 km, about a million points),
  all three mines, both faults and several lakes; for benchmarks.
"""

from __future__ import annotations

import math

from ..errors import InputError
from .config import FaultConfig, MineConfig, ScenarioConfig, WaterBody, years_between

PRESETS: tuple[str, ...] = ("tiny", "demo", "rhineland")

_START, _END = "2016-01-05", "2021-12-16"


def _centred_mine(name: str, centre: tuple[float, float], *, azimuth: float, width: float, length0: float,
                  advance_rate: float, stop: str | None = None, w_max: float, influence_radius: float,
                  time_coefficient: float) -> MineConfig:
    """A mine whose pit at the end of the default period is centred on ``centre``."""
    t_end = years_between(_START, stop if stop is not None and stop < _END else _END)
    length = length0 + advance_rate * max(t_end, 0.0)
    a = math.radians(azimuth)
    x = round(centre[0] - 0.5 * length * math.sin(a))
    y = round(centre[1] - 0.5 * length * math.cos(a))
    return MineConfig(name=name, x=float(x), y=float(y), azimuth=azimuth, width=width, length0=length0,
                      advance_rate=advance_rate, stop=stop, w_max=w_max, influence_radius=influence_radius,
                      time_coefficient=time_coefficient)


HAMBACH = _centred_mine("Hambach", (4074935.0, 3094618.0), azimuth=250.0, width=4000.0, length0=6000.0,
                        advance_rate=250.0, w_max=-1500.0, influence_radius=1200.0, time_coefficient=2.0)
GARZWEILER = _centred_mine("Garzweiler", (4074329.0, 3111356.0), azimuth=290.0, width=3500.0, length0=5000.0,
                           advance_rate=200.0, w_max=-1400.0, influence_radius=1300.0, time_coefficient=1.5)
INDEN = _centred_mine("Inden", (4064772.0, 3088430.0), azimuth=240.0, width=2500.0, length0=4000.0,
                      advance_rate=250.0, stop="2017-01-01", w_max=-1200.0, influence_radius=1000.0,
                      time_coefficient=2.5)
TINY_PIT = MineConfig(name="Tiny pit", x=4072000.0, y=3093300.0, azimuth=270.0, width=1000.0, length0=800.0,
                      advance_rate=200.0, w_max=-1500.0, influence_radius=600.0, time_coefficient=2.0)

# Both traces run NW -> SE, so the south-west (hanging-wall) side is on the right.
# The hanging-wall blocks are grabens of finite width (the Rur graben is some 15 km wide).
RURRAND = FaultConfig(name="Rurrand", x1=4040000.0, y1=3121000.0, x2=4090000.0, y2=3071000.0,
                      creep_rate=-15.0, width=300.0, hanging_wall="right", block_width=15000.0)
ERFT = FaultConfig(name="Erft", x1=4070000.0, y1=3109000.0, x2=4100000.0, y2=3079000.0,
                   creep_rate=-8.0, width=400.0, hanging_wall="right", block_width=12000.0)

POND = WaterBody(name="Pond", x=4068800.0, y=3094200.0, semi_major=350.0, semi_minor=200.0, azimuth=60.0)
BLAUSTEINSEE = WaterBody(name="Blausteinsee", x=4060000.0, y=3091500.0, semi_major=900.0, semi_minor=450.0,
                         azimuth=30.0)
LAKES = (
    BLAUSTEINSEE,
    WaterBody(name="Kasterer See", x=4081000.0, y=3102000.0, semi_major=500.0, semi_minor=300.0, azimuth=150.0),
    WaterBody(name="Liblarer See", x=4090000.0, y=3082000.0, semi_major=700.0, semi_minor=350.0, azimuth=0.0),
    WaterBody(name="Rurtalsperre", x=4050000.0, y=3060000.0, semi_major=2500.0, semi_minor=600.0, azimuth=40.0),
)


def preset(name: str, *, seed: int = 0) -> ScenarioConfig:
    """The named scenario (one of :data:`PRESETS`) with the given seed."""
    if name == "tiny":
        return ScenarioConfig(name="tiny", seed=seed, extent=(4066000.0, 3090000.0, 4072400.0, 3094800.0),
                              mines=(TINY_PIT,), faults=(RURRAND,), water=(POND,))
    if name == "demo":
        return ScenarioConfig(name="demo", seed=seed, extent=(4058000.0, 3082000.0, 4083600.0, 3101200.0),
                              mines=(HAMBACH, INDEN), faults=(RURRAND,), water=(BLAUSTEINSEE,))
    if name == "rhineland":
        return ScenarioConfig(name="rhineland", seed=seed, extent=(4000000.0, 3000000.0, 4100000.0, 3200000.0),
                              mines=(HAMBACH, GARZWEILER, INDEN), faults=(RURRAND, ERFT), water=LAKES)
    raise InputError(f"unknown scenario preset {name!r}; expected one of {', '.join(PRESETS)}")
