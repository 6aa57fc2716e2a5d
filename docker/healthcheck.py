"""Container health probe for both roles of the zk0 image.

flower-superlink and flower-supernode serve the standard gRPC health service when started
with ``--health-server-address``. This probe asks that service at ``$ZK0_HEALTH_ADDRESS``
(default 127.0.0.1:8081, so start the process with
``--health-server-address 127.0.0.1:8081``) and exits 0 only when it answers SERVING.
"""

import os
import sys

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc


def main() -> int:
    address = os.environ.get("ZK0_HEALTH_ADDRESS", "127.0.0.1:8081")
    timeout = float(os.environ.get("ZK0_HEALTH_TIMEOUT", "3"))
    try:
        with grpc.insecure_channel(address) as channel:
            reply = health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(service=""), timeout=timeout
            )
    except grpc.RpcError as err:
        print(f"unhealthy: health service at {address}: {err.code().name}", file=sys.stderr)
        return 1
    if reply.status != health_pb2.HealthCheckResponse.SERVING:
        print(f"unhealthy: status {reply.status} at {address}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
