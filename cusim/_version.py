"""The package version, from one place: the installed distribution's metadata (pyproject.toml)."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("cusim")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0+unknown"
