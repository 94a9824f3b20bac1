"""insarcast: forecast InSAR ground-surface deformation and map where the ground will move next."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("insarcast")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0.0.0+unknown"
