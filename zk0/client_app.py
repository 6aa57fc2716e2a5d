"""zk0 ClientApp: train and evaluate SmolVLA on this node's private dataset.

Train: load the global trainable weights, score them on the held-out episodes when the
server asks (saves a separate evaluate message), run local steps with the FedProx term,
reply with the new trainable weights (encoded as the run's `transfer` says) and figures.
Evaluate: seeded held-out loss. Replies carry an anonymous dataset label; errors are logged
here in full and sent without details, so no path, repo id or hostname ever leaves the node.
"""

from __future__ import annotations

import functools
import gc
import logging

from flwr.app import ArrayRecord, ConfigRecord, Context, Message, MetricRecord, RecordDict
from flwr.clientapp import ClientApp

from zk0.config import FederationSettings
from zk0.data.loading import precheck
from zk0.faults import inject_fault
from zk0.federation import protocol as wire
from zk0.federation.transfer import decode_global, encode_update, message_transfer
from zk0.logs import setup_logging
from zk0.monitoring.node_report import write_train_report
from zk0.node import NodeTrainer, node_dataset_uri, node_label
from zk0.simulation import in_virtual_node, virtual_node_dataset_uri

log = logging.getLogger("zk0.client")
app = ClientApp()


class NodeError(RuntimeError):
    """Sent to the server in place of a local error whose text may name private things."""


@functools.cache
def _import_and_freeze() -> None:
    """Import torch's and lerobot's modules, then move their objects out of the GC's sight.

    On the deployment runtime this process lives for one message, and millions of
    import-time objects (torch, transformers, sympy) would be walked by the collection at
    interpreter exit: about 2 CPU seconds per message. They live until exit anyway, so
    freezing them frees nothing less. Only modules are frozen, never a policy or dataset,
    so a long-lived process (a simulation actor) still frees those between messages.
    """
    # What NodeTrainer imports anyway.
    import lerobot.datasets.lerobot_dataset
    import lerobot.policies.factory  # noqa: F401

    gc.freeze()


def _open(context: Context) -> tuple[NodeTrainer, str]:
    setup_logging()
    settings = FederationSettings.from_run_config(context.run_config)
    if in_virtual_node():  # simulation: the run config's sim-datasets say which data
        dataset_uri = virtual_node_dataset_uri(context.node_config, settings)
    else:  # a deployed SuperNode: its own node config, real data only
        dataset_uri = node_dataset_uri(context.node_config)
    precheck(dataset_uri)  # a wrong path fails before seconds of imports
    _import_and_freeze()
    return NodeTrainer(settings, dataset_uri), node_label(dataset_uri)


def _reply(
    msg: Message, label: str, metrics: dict[str, float], records: dict[str, ArrayRecord] | None = None
) -> Message:
    content = RecordDict(
        {wire.METRICS: MetricRecord(dict(metrics)), wire.NODE: ConfigRecord({wire.DATASET_LABEL: label})}
    )
    for name, record in (records or {}).items():
        content[name] = record
    return Message(content=content, reply_to=msg)


def _guarded(work):
    """Run `work`; on failure log the full story locally and raise a detail-free error."""

    def wrapper(msg: Message, context: Context) -> Message:
        try:
            return work(msg, context)
        except Exception:
            log.exception("zk0 %s failed on this node", msg.metadata.message_type)
            kind = msg.metadata.message_type
            raise NodeError(f"{kind} failed on the node; its operator can read why in the SuperNode log") from None

    return wrapper


def _train_settings(config: ConfigRecord) -> tuple[int, float, float]:
    """The round, FedProx's mu and the plateau's lr scale from a train message, checked before
    any work: a server's message is input like any other."""
    server_round, proximal_mu = config[wire.SERVER_ROUND], config.get(wire.PROXIMAL_MU, 0.0)
    lr_scale = config.get(wire.LR_SCALE, 1.0)
    if not isinstance(server_round, int) or not isinstance(proximal_mu, int | float):
        raise ValueError(f"{wire.SERVER_ROUND} must be an integer and {wire.PROXIMAL_MU} a number")
    if isinstance(lr_scale, bool) or not isinstance(lr_scale, int | float) or not 0.0 < lr_scale <= 1.0:
        raise ValueError(f"{wire.LR_SCALE} must be a number in (0, 1], not {lr_scale!r}")
    return server_round, float(proximal_mu), float(lr_scale)


@app.train()
@_guarded
def train(msg: Message, context: Context) -> Message:
    config = msg.content.config_records[wire.CONFIG]
    server_round, proximal_mu, lr_scale = _train_settings(config)
    trainer, label = _open(context)
    evaluate_first = bool(config.get(wire.EVAL_BEFORE_TRAIN, False))
    transfer = message_transfer(config, trainer.settings.transfer)
    received = decode_global(msg.content.array_records[wire.ARRAYS], transfer)  # float32: the reference of the update
    result = trainer.train(received, server_round, proximal_mu, evaluate_first, lr_scale)
    assert result.arrays is not None  # training always returns its weights
    arrays = inject_fault(result.arrays, str(context.node_config.get("fault-injection", "")))
    log.info(
        "round %d: %s trained, loss %.4f -> %.4f",
        server_round,
        label,
        result.metrics[wire.TRAIN_LOSS_START],
        result.metrics[wire.TRAIN_LOSS_END],
    )
    write_train_report(  # for zk0-supernode's metrics (a no-op without it); never fails the round
        server_round,
        result.metrics[wire.TRAIN_SECONDS],
        result.metrics[wire.SAMPLES_PER_SECOND],
        result.metrics[wire.NUM_EXAMPLES],
    )
    return _reply(msg, label, result.metrics, encode_update(arrays, received, transfer, context.state))


@app.evaluate()
@_guarded
def evaluate(msg: Message, context: Context) -> Message:
    trainer, label = _open(context)
    transfer = message_transfer(msg.content.config_records[wire.CONFIG], trainer.settings.transfer)
    result = trainer.evaluate(decode_global(msg.content.array_records[wire.ARRAYS], transfer))
    return _reply(msg, label, result.metrics)
