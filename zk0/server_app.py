"""zk0 ServerApp: federated SmolVLA with FedProx, validated updates and checkpoints.

Each round: send the global trainable weights to sampled nodes, fold in their validated
updates as they arrive, let nodes evaluate the result, evaluate on the server's own
datasets, checkpoint, and record the round.
"""

from __future__ import annotations

import logging
import time

from flwr.app import ConfigRecord, Context
from flwr.serverapp import Grid, ServerApp

from zk0.config import FederationSettings
from zk0.federation.checkpoints import latest_checkpoint, load_trainable
from zk0.federation.global_model import GlobalModel
from zk0.federation.hub import push_checkpoint
from zk0.federation.metrics import RoundRecorder
from zk0.federation.replies import stream_replies
from zk0.federation.strategy import ValidatedFedProx
from zk0.logs import setup_logging
from zk0.model.weights import arrays_nbytes, to_array_record

log = logging.getLogger("zk0.server")
app = ServerApp()


@app.main()
def main(grid: Grid, context: Context) -> None:
    setup_logging()
    settings = FederationSettings.from_run_config(context.run_config)
    run_dir = settings.run_dir()
    model = GlobalModel(settings)
    arrays, first_round = model.initial_arrays(), 1
    if settings.resume and (latest := latest_checkpoint(run_dir)):
        done, checkpoint = latest
        arrays, first_round = load_trainable(checkpoint, list(arrays)), done + 1
        log.info("resuming %s after round %d from %s", run_dir.name, done, checkpoint)
    strategy = ValidatedFedProx(
        fraction_train=settings.fraction_train,
        fraction_evaluate=settings.fraction_evaluate,
        min_train_nodes=settings.min_nodes,
        min_evaluate_nodes=settings.min_nodes,
        min_available_nodes=settings.min_nodes,
        proximal_mu=settings.proximal_mu,
        max_update_norm=settings.max_update_norm,
    )
    recorder = RoundRecorder(run_dir, run_dir.name, settings.wandb_project, settings.as_dict())
    log.info("run %s: rounds %d..%d, %d trainable tensors (%d bytes)", run_dir.name, first_round,
             settings.num_server_rounds, len(arrays), arrays_nbytes(arrays))  # fmt: skip
    if first_round == 1:  # round 0: the starting point, evaluated and kept for comparison
        checkpoint = model.save(run_dir, 0, arrays, {"run": run_dir.name})
        recorder.write(0, {"server-eval": model.evaluate(arrays), "checkpoint": str(checkpoint)})

    for server_round in range(first_round, settings.num_server_rounds + 1):
        started = time.monotonic()
        # Train: nodes start from the global weights; updates are validated and averaged.
        messages = strategy.configure_train(server_round, to_array_record(arrays), ConfigRecord(), grid)
        replies = stream_replies(grid, messages, settings.round_timeout)
        arrays, train_report = strategy.aggregate_stream(server_round, replies, reference=arrays)

        # Evaluate: nodes on their held-out episodes, the server on its fixed datasets.
        messages = strategy.configure_evaluate(server_round, to_array_record(arrays), ConfigRecord(), grid)
        eval_report = strategy.collect_evaluations(server_round, stream_replies(grid, messages, settings.round_timeout))
        record = {
            "train": train_report.as_dict(),
            "train-loss": train_report.mean("train-loss"),
            "client-eval": eval_report.as_dict(),
            "client-eval-loss": eval_report.mean("eval-loss"),
            "bytes-per-client": arrays_nbytes(arrays),
        }
        last = server_round == settings.num_server_rounds
        if server_round % settings.server_eval_every == 0 or last:
            record["server-eval"] = model.evaluate(arrays)
        if server_round % settings.checkpoint_every == 0 or last:
            record["checkpoint"] = str(model.save(run_dir, server_round, arrays, {"run": run_dir.name}))
        record["seconds"] = time.monotonic() - started
        recorder.write(server_round, record)
        log.info("round %d done in %.1fs: train loss %s, server eval %s", server_round, record["seconds"],
                 record["train-loss"], record.get("server-eval", {}).get("mean"))  # fmt: skip
    recorder.close()

    final = latest_checkpoint(run_dir)
    if settings.hub_repo_id and final:
        push_checkpoint(final[1], settings.hub_repo_id, private=settings.hub_private)
