"""zk0: federated SmolVLA training across private robot datasets."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("zk0")  # pyproject.toml [project] version: the one place it is written
except PackageNotFoundError:  # imported from a source tree or app bundle without installing it
    __version__ = "0+unknown"
