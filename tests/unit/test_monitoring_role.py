"""The monitoring role's Prometheus files, rendered by Ansible from the role's own defaults and
vars, then checked by the real `promtool`: the configuration and the rules load, and each alert
fires (and stays quiet) on the series the zk0 exporters produce (`promtool test rules`). The
zk0_* names in the rules and the Grafana dashboard must be ones zk0/monitoring defines, so the
two cannot drift. Needs .venv-ops (`make setup-ops`) and promtool (Debian's `prometheus`
package: `make monitoring-tools`)."""

from __future__ import annotations

import ast
import json
import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
ROLE = REPO / "roles" / "monitoring"
ANSIBLE_PLAYBOOK = REPO / ".venv-ops" / "bin" / "ansible-playbook"
PROMTOOL = shutil.which("promtool")
METRIC_SOURCES = [REPO / "zk0" / "monitoring" / "server_metrics.py", REPO / "zk0" / "monitoring" / "node_metrics.py"]
ZK0_NAME = re.compile(r"\bzk0_[a-z0-9_]+\b")
SERVER = "zk0-server-host"

# The inventory the server's Prometheus is rendered for: one node on its tailnet address with its
# node exporter there too, one left on loopback (cannot be scraped from the server), one on an
# IPv6 tailnet address and its own port.
INVENTORY = {
    "all": {
        "children": {
            "zk0_server": {
                "hosts": {
                    SERVER: {
                        "ansible_connection": "local",
                        "ansible_python_interpreter": "{{ ansible_playbook_python }}",
                        "superlink_metrics_bind": "100.64.0.1",
                    }
                }
            },
            "zk0_clients": {
                "hosts": {
                    "gpu-node-1": {
                        "supernode_metrics_bind": "100.64.0.2",
                        "monitoring_node_exporter_listen_address": "100.64.0.2:9100",
                    },
                    "gpu-node-2": {},
                    "gpu-node-3": {"supernode_metrics_bind": "fd7a:115c:a1e0::3", "supernode_metrics_port": 9411},
                }
            },
        }
    }
}

RENDER = """\
- name: Render the monitoring role's files with its defaults
  hosts: {server}
  gather_facts: false
  vars_files:  # above play vars: the test's settings come as extra vars
    - {role}/defaults/main.yml
    - {role}/vars/main.yml
  tasks:
    - name: Render
      ansible.builtin.template:
        src: "{role}/templates/{{{{ item.src }}}}"
        dest: "{out}/{{{{ item.dest }}}}"
        mode: "0644"
      loop:
        - {{src: zk0.rules.yml.j2, dest: rules/zk0.rules.yml}}
        - {{src: prometheus.yml.j2, dest: prometheus.yml}}
        - {{src: prometheus.default.j2, dest: default-prometheus}}
        - {{src: prometheus-node-exporter.default.j2, dest: default-node-exporter}}
        - {{src: prometheus-alertmanager.default.j2, dest: default-alertmanager}}
        - {{src: grafana-datasource.yml.j2, dest: grafana-datasource.yml}}

    - name: Keep the computed values
      ansible.builtin.copy:
        content: >-
          {{{{ {{'plan': _monitoring_scrape_plan, 'unspecified': _monitoring_unspecified_listeners}} | to_json }}}}
        dest: "{out}/computed.json"
        mode: "0644"

    - name: Keep which listeners would face every network
      vars:
        monitoring_prometheus_listen_address: 0.0.0.0:9090
        monitoring_node_exporter_listen_address: ":9100"
        monitoring_alertmanager_listen_address: "[::]:9093"
        monitoring_grafana: true
        monitoring_grafana_listen_address: 0.0.0.0
      ansible.builtin.copy:
        content: "{{{{ _monitoring_unspecified_listeners | to_json }}}}"
        dest: "{out}/unspecified.json"
        mode: "0644"
"""

# The role itself on this machine posing as Debian 13, told to listen everywhere (check mode:
# it must stop at its first check anyway).
REFUSE = """\
- name: Apply the role with a listener on every address
  hosts: {server}
  gather_facts: false
  tasks:
    - name: Pose as Debian 13
      ansible.builtin.set_fact:
        distribution: Debian
        distribution_release: trixie
        distribution_version: "13.1"
        os_family: Debian
        cacheable: true

    - name: Apply the role
      block:
        - name: Include monitoring
          ansible.builtin.include_role:
            name: monitoring
          vars:
            monitoring_prometheus_listen_address: 0.0.0.0:9090
      rescue:
        - name: Keep the refusal
          check_mode: false
          ansible.builtin.copy:
            content: "{{{{ {{'task': ansible_failed_task.name, 'msg': ansible_failed_result.msg}} | to_json }}}}"
            dest: "{out}/refusal.json"
            mode: "0644"
"""


def ansible(work: Path, playbook: str, *extra: str) -> None:
    (work / "play.yml").write_text(playbook)
    env = {
        **os.environ,
        "ANSIBLE_CONFIG": "",
        "ANSIBLE_HOME": str(work / "ansible-home"),
        "ANSIBLE_ROLES_PATH": str(REPO / "roles"),
        "ANSIBLE_LOCALHOST_WARNING": "false",
    }
    result = subprocess.run(
        [str(ANSIBLE_PLAYBOOK), *extra, "-i", "inventory.json", "play.yml"],
        cwd=work,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]


@pytest.fixture(scope="module")
def rendered(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if not ANSIBLE_PLAYBOOK.exists():
        pytest.skip("needs .venv-ops (make setup-ops; `make test` makes it in lint)")
    work = tmp_path_factory.mktemp("monitoring")
    out = work / "etc"
    (out / "rules").mkdir(parents=True)
    (work / "inventory.json").write_text(json.dumps(INVENTORY))
    settings = {"monitoring_prometheus_config_dir": str(out), "monitoring_alertmanager": True}
    ansible(work, RENDER.format(server=SERVER, role=ROLE, out=out), "-e", json.dumps(settings))
    return out


def promtool(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    if PROMTOOL is None:
        pytest.skip("needs promtool (Debian's prometheus package: make monitoring-tools)")
    return subprocess.run([PROMTOOL, *args], cwd=cwd, capture_output=True, text=True, timeout=120, check=False)


def defined_metric_names() -> set[str]:
    """The names zk0's collectors expose: each metric family's first argument (counters with
    `_total`, as prometheus_client exposes them)."""
    names: set[str] = set()
    for source in METRIC_SOURCES:
        for node in ast.walk(ast.parse(source.read_text())):
            if not (isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant)):
                continue
            func = node.func.id if isinstance(node.func, ast.Name) else getattr(node.func, "attr", "")
            name = node.args[0].value
            if not isinstance(name, str):
                continue
            if func in {"GaugeMetricFamily", "_gauge"}:
                names.add(name)
            elif func == "CounterMetricFamily":
                names.add(f"{name}_total")
    return names


def dashboard_exprs() -> list[str]:
    dashboard = json.loads((ROLE / "files" / "zk0-dashboard.json").read_text())
    return [target["expr"] for panel in dashboard["panels"] for target in panel["targets"]]


# ---------------------------------------------------------------- the scrape configuration


def test_prometheus_yml_passes_promtool_with_its_rules(rendered: Path) -> None:
    result = promtool("check", "config", str(rendered / "prometheus.yml"))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "zk0.rules.yml" in result.stdout and "SUCCESS: 6 rules found" in result.stdout, result.stdout


def test_the_server_scrapes_its_monitor_and_each_node_on_the_address_the_node_binds(rendered: Path) -> None:
    config = yaml.safe_load((rendered / "prometheus.yml").read_text())
    jobs = {
        job["job_name"]: {
            target: group["labels"]["node"] for group in job["static_configs"] for target in group["targets"]
        }
        for job in config["scrape_configs"]
    }
    assert jobs == {
        "zk0-server": {"100.64.0.1:9400": SERVER},  # superlink_metrics_bind:superlink_metrics_port
        "zk0-nodes": {"100.64.0.2:9401": "gpu-node-1", "[fd7a:115c:a1e0::3]:9411": "gpu-node-3"},
        "node": {"127.0.0.1:9100": SERVER, "100.64.0.2:9100": "gpu-node-1"},
    }
    assert config["rule_files"] == [str(rendered / "rules" / "zk0.rules.yml")]
    assert config["alerting"]["alertmanagers"][0]["static_configs"][0]["targets"] == ["127.0.0.1:9093"]
    skipped = json.loads((rendered / "computed.json").read_text())["plan"]["skipped"]
    assert skipped == [
        "gpu-node-2 (zk0 node metrics on 127.0.0.1:9401)",
        "gpu-node-2 (node exporter on 127.0.0.1:9100)",
        "gpu-node-3 (node exporter on 127.0.0.1:9100)",
    ]


def test_every_listener_is_loopback_by_default_and_every_network_is_refused(rendered: Path) -> None:
    args = {
        name: (rendered / f"default-{name}").read_text() for name in ("prometheus", "node-exporter", "alertmanager")
    }
    assert "--web.listen-address=127.0.0.1:9090 " in args["prometheus"]
    assert "--storage.tsdb.retention.time=30d" in args["prometheus"]
    assert "--web.listen-address=127.0.0.1:9100" in args["node-exporter"]
    assert "--web.listen-address=127.0.0.1:9093 --cluster.listen-address=" in args["alertmanager"]
    assert "0.0.0.0" not in "".join(args.values())
    assert 'url: "http://127.0.0.1:9090"' in (rendered / "grafana-datasource.yml").read_text()
    assert json.loads((rendered / "computed.json").read_text())["unspecified"] == []
    assert json.loads((rendered / "unspecified.json").read_text()) == [
        "monitoring_prometheus_listen_address",
        "monitoring_node_exporter_listen_address",
        "monitoring_alertmanager_listen_address",
        "monitoring_grafana_listen_address",
    ]


def test_the_role_stops_before_any_change_when_told_to_listen_everywhere(rendered: Path) -> None:
    work = rendered.parent
    ansible(work, REFUSE.format(server=SERVER, out=work), "--check")
    refusal = json.loads((work / "refusal.json").read_text())
    assert refusal["task"].startswith("Check "), refusal
    assert "monitoring_prometheus_listen_address" in refusal["msg"] and "tailnet address" in refusal["msg"], refusal


# ---------------------------------------------------------------- the alert rules


def test_the_rules_pass_promtool(rendered: Path) -> None:
    result = promtool("check", "rules", str(rendered / "rules" / "zk0.rules.yml"))
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_zk0_metric_in_the_rules_and_the_dashboard_is_defined_in_zk0_monitoring(rendered: Path) -> None:
    defined = defined_metric_names()
    # The extraction itself: it must see both collectors, counters under their exposed name.
    assert {"zk0_superlink_nodes_online", "zk0_node_up", "zk0_run_replies_total", "zk0_node_tasks_total"} <= defined
    rules = yaml.safe_load((rendered / "rules" / "zk0.rules.yml").read_text())
    used_by_rules = {name for rule in rules["groups"][0]["rules"] for name in ZK0_NAME.findall(rule["expr"])}
    used_by_rules |= set(ZK0_NAME.findall(json.dumps(rules)))  # annotations' queries too
    used_by_dashboard = {name for expr in dashboard_exprs() for name in ZK0_NAME.findall(expr)}
    assert len(used_by_rules) >= 8 and len(used_by_dashboard) >= 15
    assert used_by_rules - defined == set()
    assert used_by_dashboard - defined == set()


def test_the_dashboard_uses_the_provisioned_data_source(rendered: Path) -> None:
    dashboard = json.loads((ROLE / "files" / "zk0-dashboard.json").read_text())
    provisioned = yaml.safe_load((rendered / "grafana-datasource.yml").read_text())["datasources"][0]["uid"]
    sources = {json.dumps(panel["datasource"], sort_keys=True) for panel in dashboard["panels"]}
    assert sources == {json.dumps({"type": "prometheus", "uid": provisioned}, sort_keys=True)}
    assert len({panel["id"] for panel in dashboard["panels"]}) == len(dashboard["panels"])


SRV = 'job="zk0-server",instance="100.64.0.1:9400",node="zk0-server-host"'
N1 = 'job="zk0-nodes",instance="100.64.0.2:9401",node="gpu-node-1"'
N3 = 'job="zk0-nodes",instance="[fd7a:115c:a1e0::3]:9411",node="gpu-node-3"'


def labels(selector: str, **more: str) -> dict[str, str]:
    found = dict(re.findall(r'(\w+)="([^"]*)"', selector))
    return {**found, **more}


def alert(name: str, severity: str, selector: str, summary: str, description: str, **more: str) -> dict[str, Any]:
    return {
        "exp_labels": labels(selector, alertname=name, severity=severity, **more),
        "exp_annotations": {"summary": summary, "description": description},
    }


def offline(selector: str, node: str) -> dict[str, Any]:
    return alert(
        "ZK0NodeOffline",
        "warning",
        selector,
        f"zk0 node {node} is offline",
        f"{node} has had its metrics endpoint down or no connection to the SuperLink for 10 minutes.",
    )


# Each case: series as the exporters write them (one sample a minute), and when which alerts fire.
# The role's defaults: offline 10 min, stall 60 min, 1 rejection, 10 % disk for 10 min, server 5 min.
RULE_TESTS: list[dict[str, Any]] = [
    {  # node 1's endpoint down from minute 2, node 3's SuperNode without the SuperLink from minute 6
        "interval": "1m",
        "input_series": [
            {"series": f"up{{{N1}}}", "values": "1 1 0x30"},
            {"series": f"zk0_node_superlink_connected{{{N3}}}", "values": "1x5 0x30"},
            {"series": f"up{{{N3}}}", "values": "1x35"},
        ],
        "alert_rule_test": [
            {"eval_time": "11m", "alertname": "ZK0NodeOffline", "exp_alerts": []},
            {
                "eval_time": "13m",
                "alertname": "ZK0NodeOffline",
                "exp_alerts": [offline(N1, "gpu-node-1")],
            },
            {
                "eval_time": "17m",
                "alertname": "ZK0NodeOffline",
                "exp_alerts": [
                    offline(N1, "gpu-node-1"),
                    offline(N3, "gpu-node-3"),
                ],
            },
        ],
    },
    {  # the SuperLink: 3 enrolled, 2 online
        "interval": "1m",
        "input_series": [
            {"series": f"zk0_superlink_nodes_enrolled{{{SRV}}}", "values": "3x20"},
            {"series": f"zk0_superlink_nodes_online{{{SRV}}}", "values": "2x20"},
        ],
        "alert_rule_test": [
            {"eval_time": "9m", "alertname": "ZK0EnrolledNodesOffline", "exp_alerts": []},
            {
                "eval_time": "11m",
                "alertname": "ZK0EnrolledNodesOffline",
                "exp_alerts": [
                    alert(
                        "ZK0EnrolledNodesOffline",
                        "warning",
                        SRV,
                        "1 enrolled zk0 nodes are offline",
                        "The SuperLink has had enrolled nodes without a heartbeat for 10 minutes.",
                    )
                ],
            },
        ],
    },
    {  # a run stuck: round closed at t=60 s, a node handed a task at t=120 s, nothing since
        "interval": "1m",
        "input_series": [
            {"series": f'zk0_run_last_round_timestamp_seconds{{{SRV},run="r1"}}', "values": "60x70"},
            {"series": f"zk0_node_last_task_timestamp_seconds{{{N1}}}", "values": "120x70"},
        ],
        "alert_rule_test": [
            {"eval_time": "61m", "alertname": "ZK0RoundStalled", "exp_alerts": []},
            {
                "eval_time": "63m",
                "alertname": "ZK0RoundStalled",
                "exp_alerts": [
                    alert(
                        "ZK0RoundStalled",
                        "critical",
                        SRV,
                        "zk0 run r1: no round closed for a long time",
                        "The last round closed at 1970-01-01 00:01:00 +0000 UTC; nodes were handed work after it "
                        "and none for 60 minutes.",
                        run="r1",
                    )
                ],
            },
        ],
    },
    {  # a run that ended: its last round closed after the last task; hours of quiet are fine
        "interval": "1m",
        "input_series": [
            {"series": f'zk0_run_last_round_timestamp_seconds{{{SRV},run="r1"}}', "values": "300x200"},
            {"series": f"zk0_node_last_task_timestamp_seconds{{{N1}}}", "values": "120x200"},
        ],
        "alert_rule_test": [{"eval_time": "190m", "alertname": "ZK0RoundStalled", "exp_alerts": []}],
    },
    {  # round 3 rejected two train updates over the norm bound, none for their shape
        "interval": "1m",
        "input_series": [
            {
                "series": f'zk0_round_replies_rejected{{{SRV},run="r1",phase="train",reason="norm-bound"}}',
                "values": "2x5",
            },
            {
                "series": f'zk0_round_replies_rejected{{{SRV},run="r1",phase="train",reason="weight-shape"}}',
                "values": "0x5",
            },
            {"series": f'zk0_round_replies_round{{{SRV},run="r1"}}', "values": "3x5"},
        ],
        "alert_rule_test": [
            {
                "eval_time": "1m",
                "alertname": "ZK0UpdatesRejected",
                "exp_alerts": [
                    alert(
                        "ZK0UpdatesRejected",
                        "warning",
                        SRV,
                        "zk0 run r1: 2 train replies rejected (norm-bound)",
                        "In round 3; the server log names the nodes.",
                        run="r1",
                        phase="train",
                        reason="norm-bound",
                    )
                ],
            }
        ],
    },
    {  # node 1's root at 5 % free; its /run tmpfs at 1 % and /data at 50 % do not count
        "interval": "1m",
        "input_series": [
            *(
                {
                    "series": f'node_filesystem_{figure}{{job="node",instance="100.64.0.2:9100",node="gpu-node-1",'
                    f'device="{device}",fstype="{fstype}",mountpoint="{mount}"}}',
                    "values": values,
                }
                for device, fstype, mount, free in (
                    ("/dev/sda1", "ext4", "/", 5),
                    ("tmpfs", "tmpfs", "/run", 1),
                    ("/dev/sdb1", "xfs", "/data", 50),
                )
                for figure, values in (("avail_bytes", f"{free}x20"), ("size_bytes", "100x20"), ("readonly", "0x20"))
            )
        ],
        "alert_rule_test": [
            {"eval_time": "9m", "alertname": "ZK0DiskNearlyFull", "exp_alerts": []},
            {
                "eval_time": "11m",
                "alertname": "ZK0DiskNearlyFull",
                "exp_alerts": [
                    alert(
                        "ZK0DiskNearlyFull",
                        "warning",
                        'job="node",instance="100.64.0.2:9100",node="gpu-node-1",device="/dev/sda1",fstype="ext4",'
                        'mountpoint="/"',
                        "/ on gpu-node-1 is nearly full",
                        "5.0% free (alert below 10%).",
                    )
                ],
            },
        ],
    },
    {  # the monitor cannot read the SuperLink's database
        "interval": "1m",
        "input_series": [
            {"series": f"up{{{SRV}}}", "values": "1x10"},
            {"series": f"zk0_superlink_db_up{{{SRV}}}", "values": "0x10"},
        ],
        "alert_rule_test": [
            {
                "eval_time": "6m",
                "alertname": "ZK0ServerMetricsDown",
                "exp_alerts": [
                    alert(
                        "ZK0ServerMetricsDown",
                        "critical",
                        SRV,
                        "zk0 server metrics are down",
                        "zk0 monitor serve is not answering, or cannot read the SuperLink database, for 5 minutes.",
                    )
                ],
            }
        ],
    },
]


def test_each_alert_fires_on_the_exporters_series_and_only_then(rendered: Path) -> None:
    spec = {"rule_files": ["zk0.rules.yml"], "evaluation_interval": "1m", "tests": RULE_TESTS}
    (rendered / "rules" / "zk0.test.yml").write_text(yaml.safe_dump(spec, sort_keys=False))
    result = promtool("test", "rules", "zk0.test.yml", cwd=rendered / "rules")
    assert result.returncode == 0, result.stdout + result.stderr
    tested = {case["alertname"] for test in RULE_TESTS for case in test["alert_rule_test"]}
    rules = yaml.safe_load((rendered / "rules" / "zk0.rules.yml").read_text())
    assert tested == {rule["alert"] for rule in rules["groups"][0]["rules"]}
