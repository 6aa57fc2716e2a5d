"""Local training and evaluation of SmolVLA on one node's data."""
