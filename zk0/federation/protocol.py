"""Every name that crosses the wire between the ServerApp and the ClientApp.

Both apps import these, so a renamed record or figure cannot leave one side reading a key
the other no longer sends. Some are Flower's own (its FedAvg and FedProx send `arrays`,
`config`, `server-round` and `proximal-mu`, and weight replies by `num-examples`):
`ValidatedFedProx` is built with the keys below, and a unit test holds Flower's messages
to them.
"""

from __future__ import annotations

# Records of a message's RecordDict.
ARRAYS = "arrays"  # ArrayRecord: the trainable weights, both ways
CONFIG = "config"  # ConfigRecord, server -> node: what this message asks of the node
METRICS = "metrics"  # MetricRecord, node -> server: the node's figures
NODE = "node"  # ConfigRecord, node -> server: the node's anonymous dataset label
SCALES = "scales"  # ArrayRecord, node -> server in int8-delta runs: float32 scales of ARRAYS

# Keys of CONFIG.
SERVER_ROUND = "server-round"  # set by Flower's configure_train / configure_evaluate
PROXIMAL_MU = "proximal-mu"  # set by Flower's FedProx.configure_train
EVAL_BEFORE_TRAIN = "eval-before-train"  # score the received weights before training
LR_SCALE = "lr-scale"  # the server's plateau scale of the run's learning rate, in (0, 1]
TRANSFER = "transfer"  # how ARRAYS (and SCALES) are encoded, both ways: one of TRANSFERS

# Values of TRANSFER (the run config's `transfer`; zk0.federation.transfer encodes them).
FP32 = "fp32"
BF16 = "bf16"
INT8_DELTA = "int8-delta"
TRANSFERS = (FP32, BF16, INT8_DELTA)

# Key of NODE.
DATASET_LABEL = "dataset-label"

# Keys of METRICS.
NUM_EXAMPLES = "num-examples"  # weights the reply in the mean; capped by the server
EVAL_LOSS = "eval-loss"
EVAL_NUM_EXAMPLES = "eval-num-examples"  # weights EVAL_LOSS in a train reply
TRAIN_LOSS = "train-loss"
TRAIN_LOSS_START = "train-loss-start"
TRAIN_LOSS_END = "train-loss-end"
SAMPLES_PER_SECOND = "samples-per-second"
TRAIN_SECONDS = "train-seconds"
LEARNING_RATE = "learning-rate"  # the mean of the round's per-step learning rates (the run's schedule)

# The figures each reply may carry; the server drops any other name.
EVALUATE_METRICS = frozenset({NUM_EXAMPLES, EVAL_LOSS})
TRAIN_METRICS = frozenset(
    {
        NUM_EXAMPLES,
        TRAIN_LOSS,
        TRAIN_LOSS_START,
        TRAIN_LOSS_END,
        SAMPLES_PER_SECOND,
        TRAIN_SECONDS,
        LEARNING_RATE,
        EVAL_LOSS,  # only when asked with EVAL_BEFORE_TRAIN
        EVAL_NUM_EXAMPLES,
    }
)
