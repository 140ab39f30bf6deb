"""provisioner: create Qoder Cloud Agents Environments in bulk."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("provisioner")
except PackageNotFoundError:  # pragma: no cover - only when run from a bare checkout
    __version__ = "0.0.0"

__all__ = ["__version__"]
