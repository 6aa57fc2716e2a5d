"""Health and training figures for Prometheus, on both sides of the federation.

Server: `zk0 monitor serve` (server_metrics, round_files, superlink_db, monitor_cli), a
long-lived process beside the SuperLink that reads the ServerApp's round files and the
SuperLink's database. Node: `zk0-supernode --metrics-address` (node_metrics), with the
ClientApp's last-round report (node_report).
"""
