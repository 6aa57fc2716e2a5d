#!/usr/bin/python3
"""Stands in for `zk0 monitor serve` (127.0.0.1:9400) and zk0-supernode's metrics
(127.0.0.1:9401) with fixed figures in their exposition format: a run whose round 3 rejected
two updates over the norm bound, one enrolled node online and connected."""

import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

NOW = time.time()
SERVER = f"""\
zk0_superlink_db_up 1
zk0_superlink_nodes_enrolled 1
zk0_superlink_nodes_online 1
zk0_run_last_round{{run="molecule"}} 3
zk0_run_last_round_timestamp_seconds{{run="molecule"}} {NOW}
zk0_round_replies{{run="molecule",phase="train",outcome="accepted"}} 1
zk0_round_replies{{run="molecule",phase="train",outcome="rejected"}} 2
zk0_round_replies_rejected{{run="molecule",phase="train",reason="norm-bound"}} 2
zk0_round_replies_round{{run="molecule"}} 3
"""
NODE = f"""\
zk0_node_up 1
zk0_node_superlink_connected 1
zk0_node_clientapp_pool_ready 1
zk0_node_tasks_total 3
zk0_node_last_task_timestamp_seconds {NOW - 60}
"""


def handler(body: str) -> type[BaseHTTPRequestHandler]:
    class Metrics(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            data = body.encode()
            self.send_response(200 if self.path == "/metrics" else 404)
            self.send_header("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

    return Metrics


servers = [ThreadingHTTPServer(("127.0.0.1", port), handler(body)) for port, body in ((9400, SERVER), (9401, NODE))]
for server in servers[1:]:
    threading.Thread(target=server.serve_forever, daemon=True).start()
servers[0].serve_forever()
