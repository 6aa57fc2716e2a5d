"""Trivial numpy Flower app (Message API) used as the deployment runtime's baseline."""
