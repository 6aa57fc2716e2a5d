"""zk0: federated SmolVLA training across private robot datasets."""

__version__ = "0.4.0"
