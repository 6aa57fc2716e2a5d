"""zk0 ServerApp: federated SmolVLA with FedProx, validated updates and checkpoints.

Each round: send the global trainable weights to sampled nodes (which score them on their
held-out episodes, then train), fold in their validated updates as they arrive, optionally
let nodes evaluate the result in a second message, evaluate on the server's own datasets,
checkpoint, record the round and redraw the run's charts (`zk0.federation.plots`).
`zk0.federation.rounds` says which optional work is due.
"""

from __future__ import annotations

import logging
from typing import Any

from flwr.app import Context
from flwr.serverapp import Grid, ServerApp

from zk0.config import FederationSettings
from zk0.federation import protocol as wire
from zk0.federation.checkpoints import latest_checkpoint, load_trainable
from zk0.federation.global_model import GlobalModel
from zk0.federation.hub import push_checkpoint
from zk0.federation.metrics import RoundRecorder, read_round_record
from zk0.federation.plateau import RECORD_KEY as PLATEAU
from zk0.federation.plateau import Plateau
from zk0.federation.plots import RunPlots
from zk0.federation.replies import stream_replies
from zk0.federation.rounds import RoundPlan, StepClock
from zk0.federation.strategy import ValidatedFedProx
from zk0.federation.transfer import encode_global
from zk0.logs import setup_logging
from zk0.model.weights import arrays_nbytes

log = logging.getLogger("zk0.server")
app = ServerApp()


@app.main()
def main(grid: Grid, context: Context) -> None:
    setup_logging()
    settings = FederationSettings.from_run_config(context.run_config)
    plan = RoundPlan.from_settings(settings)
    run_dir = settings.run_dir()
    model = GlobalModel(settings)
    arrays, first_round = model.initial_arrays(), 1
    plateau = Plateau.from_settings(settings)  # lr and mu after a stall (off unless plateau-patience)
    if settings.resume and (latest := latest_checkpoint(run_dir)):
        done, checkpoint = latest
        arrays, first_round = load_trainable(checkpoint, list(arrays)), done + 1
        plateau.restore(read_round_record(run_dir, done))
        log.info("resuming %s after round %d from %s", run_dir.name, done, checkpoint)
    strategy = ValidatedFedProx(
        fraction_train=settings.fraction_train,
        fraction_evaluate=settings.fraction_evaluate,
        min_train_nodes=settings.min_nodes,
        min_evaluate_nodes=settings.min_nodes,
        min_available_nodes=settings.min_nodes,
        proximal_mu=settings.proximal_mu,
        max_update_norm=settings.max_update_norm,
        # Caps on the example counts nodes report: what one message asks of a node.
        max_train_examples=settings.local_steps * settings.batch_size,
        max_eval_examples=settings.eval_batches * settings.batch_size,
        transfer=settings.transfer,
    )
    recorder = RoundRecorder(run_dir, run_dir.name, settings.wandb_project, settings.as_dict())
    plots = RunPlots(run_dir, settings.eval_datasets, recorder)  # <run>/plots/*.png; never fails a round
    log.info(
        "run %s: rounds %d..%d, %d trainable tensors (%d bytes)",
        run_dir.name,
        first_round,
        settings.num_server_rounds,
        len(arrays),
        arrays_nbytes(arrays),
    )
    if first_round == 1:  # round 0: the starting point, evaluated and kept for comparison
        checkpoint = model.save(run_dir, 0, arrays, {"run": run_dir.name})
        recorder.write(0, {"server-eval": model.evaluate(arrays), "checkpoint": str(checkpoint)})
        plots.after_round(0, model, arrays)

    for server_round in range(first_round, settings.num_server_rounds + 1):
        clock = StepClock()  # where the round's time goes, for the round JSON
        # Train: nodes score the global weights on their held-out episodes, then train from
        # them; updates are validated and averaged. One message (one process) per node.
        sent = encode_global(arrays, settings.transfer)  # and what nodes decode: their updates' reference
        train_config = sent.config({wire.EVAL_BEFORE_TRAIN: True, wire.LR_SCALE: plateau.lr_scale})
        strategy.proximal_mu = plateau.mu  # FedProx sends it as proximal-mu
        messages = strategy.configure_train(server_round, sent.record, train_config, grid)
        replies = stream_replies(grid, messages, settings.round_timeout)
        arrays, train_report = strategy.aggregate_stream(server_round, replies, arrays, sent.received)
        clock.lap("train-messages")
        eval_start = train_report.evaluations_before_train()
        record: dict[str, Any] = {
            "train": train_report.as_dict(),
            "train-loss": train_report.mean(wire.TRAIN_LOSS),
            # Scores the weights this round started from (the previous round's result).
            "client-eval-start": eval_start.as_dict(),
            "client-eval-start-loss": eval_start.mean(wire.EVAL_LOSS),
            "transfer": settings.transfer,
            "bytes-per-client": sent.nbytes,  # the weights sent to each node
        }
        if plan.evaluate_messages(server_round):  # nodes score this round's result now
            sent = encode_global(arrays, settings.transfer)
            messages = strategy.configure_evaluate(server_round, sent.record, sent.config(), grid)
            report = strategy.collect_evaluations(server_round, stream_replies(grid, messages, settings.round_timeout))
            record["client-eval"] = report.as_dict()
            record["client-eval-loss"] = report.mean(wire.EVAL_LOSS)
            clock.lap("evaluate-messages")
        if plan.server_eval(server_round):
            record["server-eval"] = model.evaluate(arrays)
            if plateau.observe(record["server-eval"]["mean"]):
                log.info(
                    "round %d: no new best server-eval loss in %d evaluations: lr x %g, proximal-mu %g from now on",
                    server_round,
                    plateau.patience,
                    plateau.lr_scale,
                    plateau.mu,
                )
            clock.lap("server-eval")
        record[PLATEAU] = plateau.state()
        if plan.checkpoint(server_round):
            record["checkpoint"] = str(model.save(run_dir, server_round, arrays, {"run": run_dir.name}))
            clock.lap("checkpoint")
        record["seconds"], record["seconds-by-step"] = clock.total(), clock.seconds
        recorder.write(server_round, record)
        plots.after_round(server_round, model if "server-eval" in record else None, arrays)  # charts, wandb too
        server_eval = record.get("server-eval", {}).get("mean")
        log.info(
            "round %d done in %.1fs: train loss %s, server eval %s%s",
            server_round,
            record["seconds"],
            record["train-loss"],
            server_eval,
            "" if train_report.adopted else " (aggregate not finite: kept the previous weights)",
        )
    recorder.close()

    final = latest_checkpoint(run_dir)
    if settings.hub_repo_id and final:
        push_checkpoint(final[1], settings.hub_repo_id, private=settings.hub_private)
