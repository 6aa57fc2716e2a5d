"""What the warm ClientApp pool imports once, before it forks a process per message.

Imported by the pool's fork server, never by a ClientApp. Only third-party modules are
imported here: the app's own code (zk0) is loaded fresh from the run's app bundle in every
ClientApp process, as Flower loads it, so a run always executes the code it was submitted with.
"""

import gc
import logging

_ROOT_HANDLERS = list(logging.getLogger().handlers)

import flwr.supernode.runtime.run_clientapp  # noqa: F401  (the ClientApp process itself)
import lerobot.datasets.lerobot_dataset  # datasets, pyarrow, torchvision
import lerobot.policies.factory
import lerobot.policies.smolvla.modeling_smolvla  # noqa: F401  (transformers)
import torch
import torch._dynamo  # the optimizer imports it

# Forking after CUDA is initialised breaks CUDA in the children; importing never does it.
if torch.cuda.is_available() and torch.cuda.is_initialized():  # pragma: no cover - GPU only
    raise RuntimeError("CUDA was initialised while preloading; ClientApps could not use the GPU")

# lerobot's import configures the root logger; a ClientApp sets up its own logging, as it
# would in a fresh interpreter.
for _handler in [h for h in logging.getLogger().handlers if h not in _ROOT_HANDLERS]:
    logging.getLogger().removeHandler(_handler)

# Keep the collector off the import-time objects the forked ClientApps share copy-on-write.
gc.freeze()
