"""Column names of EGMS Level 3 CSV tiles, and the aliases under which releases deliver them.

An EGMS L3 vertical ("U") tile has the columns::

    pid, easting, northing,                                   # identity, EPSG:3035 metres
    height, rmse, mean_velocity, mean_velocity_std,           # quality / summary columns
    acceleration, acceleration_std, seasonality, seasonality_std,
    20160103, 20160109, ...                                   # one column per epoch (mm)

Header names are matched case-insensitively and with surrounding white space removed. Each
canonical column accepts the aliases listed in :data:`ALIASES`, **in priority order**: when a
header holds several aliases of one column (EGMS files may carry both ``height`` and
``height_wgs84``), the first alias in the list wins and the others are ignored.

Any column whose name starts with a digit is an epoch and must be an 8-digit ``yyyymmdd`` date.
Other columns that are neither canonical names nor aliases (``mp_type``, ``line``, ``los_up`` ...)
are ignored.
"""

from __future__ import annotations

REQUIRED_COLUMNS: tuple[str, ...] = ("pid", "easting", "northing")
"""Columns every tile must have (besides at least one epoch column)."""

QUALITY_COLUMNS: tuple[str, ...] = (
    "height",
    "rmse",
    "mean_velocity",
    "mean_velocity_std",
    "acceleration",
    "acceleration_std",
    "seasonality",
    "seasonality_std",
)
"""Optional per-point quality columns, in the order they are written."""

ALIASES: dict[str, tuple[str, ...]] = {
    # identity and position (EPSG:3035, metres)
    "pid": ("pid", "point_id", "pointid", "id"),
    "easting": ("easting", "x", "east"),
    "northing": ("northing", "y", "north"),
    # quality columns; ``height`` prefers the orthometric height over the ellipsoidal one
    "height": ("height", "height_ortho", "height_orthometric", "height_wgs84"),
    "rmse": ("rmse", "rmse_ts", "rms", "rms_error"),
    "mean_velocity": ("mean_velocity", "velocity", "vel", "mean_vel", "velocity_mm_yr"),
    "mean_velocity_std": ("mean_velocity_std", "velocity_std", "vel_std", "mean_vel_std", "std_velocity"),
    "acceleration": ("acceleration", "acc", "mean_acceleration"),
    "acceleration_std": ("acceleration_std", "acc_std", "mean_acceleration_std", "std_acceleration"),
    "seasonality": ("seasonality", "season", "seasonal_amplitude"),
    "seasonality_std": ("seasonality_std", "season_std", "seasonal_amplitude_std", "std_seasonality"),
}
"""Canonical column -> accepted header names (lower case), first match wins."""

NULL_VALUES: tuple[str, ...] = ("", "nan", "NaN", "NAN", "-nan", "-NaN", "NA", "N/A", "null", "NULL")
"""Cell texts read as missing (NaN). EGMS leaves a cell empty where an epoch has no value."""

assert set(ALIASES) == set(REQUIRED_COLUMNS) | set(QUALITY_COLUMNS)


def normalise(name: str) -> str:
    """The form in which header names are compared: stripped, lower case, BOM removed."""
    return name.strip().lstrip("\ufeff").strip().lower()


def match_columns(header: list[str] | tuple[str, ...]) -> dict[str, int]:
    """Canonical name -> index in ``header`` for every canonical column found (first alias wins)."""
    index: dict[str, int] = {}
    for i, name in enumerate(header):
        index.setdefault(normalise(name), i)
    found: dict[str, int] = {}
    for canonical, aliases in ALIASES.items():
        for alias in aliases:
            if alias in index:
                found[canonical] = index[alias]
                break
    return found


def is_date_column(name: str) -> bool:
    """Epoch columns are those whose (stripped) name starts with a digit."""
    stripped = normalise(name)
    return bool(stripped) and stripped[0].isdigit()
