"""The deployment files (crmsync/deploy_files/, shipped in the wheel and written out by
`crmsync deploy-files`) agree with the code and with their tools.

Static checks always run: the Grafana dashboard's queries and the alert rules use only
metric names crmsync exports (crmsync/metrics.py), every alert has a promtool unit test
that sees it fire and not fire, the systemd unit has the directives the daemon relies on,
and the production config example is valid. The tools' own checks (`systemd-analyze
verify`, `promtool check/test rules`, `promtool check config`) run when the tools are
installed and are skipped with the reason otherwise. No YAML library is needed: the rule
files are read with a small line scanner made for their layout (promtool, when present,
checks them as YAML).
"""

from __future__ import annotations

import importlib
import json
import re
import shutil
import subprocess
import sys
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import REGISTRY

from crmsync.config import parse_config

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "crmsync" / "deploy_files"
UNIT = DEPLOY / "crmsync.service"
CONFIG_EXAMPLE = DEPLOY / "crmsync.toml.example"
DASHBOARD = DEPLOY / "grafana" / "crmsync.json"
PROMETHEUS_CONFIG = DEPLOY / "prometheus" / "prometheus.yml"
RULES = DEPLOY / "prometheus" / "crmsync.rules.yml"
RULE_TESTS = DEPLOY / "prometheus" / "crmsync.rules.test.yml"

#: metrics an alert may watch before the daemon exports them (the alert stays silent)
PLANNED_METRICS: frozenset[str] = frozenset()
#: series Prometheus itself writes for every target
EXTERNAL_METRICS = frozenset({"up"})
GRAFANA_BUILTINS = frozenset({"__rate_interval", "__interval", "__range", "__interval_ms"})

STRING = re.compile(r'"(?:[^"\\]|\\.)*"')
IDENTIFIER = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")
VARIABLE = re.compile(r"\$\{(\w+)(?::\w+)?\}|\$(\w+)")


def exported_sample_names() -> set[str]:
    """Every sample name the daemon's registry can produce (counter foo -> foo_total, ...).

    Metrics live in crmsync/metrics.py and next to their owner (e.g. crmsync_stalled in
    crmsync/daemon/stall.py): importing the daemon registers them all.
    """
    importlib.import_module("crmsync.metrics")
    importlib.import_module("crmsync.daemon.app")
    suffixes = {
        "counter": ("_total", "_created"),
        "histogram": ("_bucket", "_count", "_sum", "_created"),
        "summary": ("", "_count", "_sum", "_created"),
        "info": ("_info",),
    }
    names: set[str] = set()
    for family in REGISTRY.collect():
        names.update(family.name + suffix for suffix in suffixes.get(family.type, ("",)))
    return names


def metric_names(expr: str) -> set[str]:
    """Identifiers of a PromQL expression that name metrics (not functions, labels, strings).

    Good enough for our own expressions: every metric starts with crmsync_ or process_ or
    is one of EXTERNAL_METRICS, so other identifiers (sum, by, rate, le, tenant) are ignored.
    """
    text = STRING.sub('""', expr)
    text = re.sub(r"\{[^}]*\}", "{}", text)  # label matchers
    found = set()
    for match in IDENTIFIER.finditer(text):
        name = match.group(0)
        is_call = text[match.end():].lstrip().startswith("(")
        if not is_call and (name.startswith(("crmsync_", "process_"))
                            or name in EXTERNAL_METRICS):
            found.add(name)
    return found


# -- Grafana dashboard ------------------------------------------------------------------


def load_dashboard() -> dict[str, Any]:
    return dict(json.loads(DASHBOARD.read_text()))


def walk_panels(panels: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    for panel in panels:
        yield panel
        yield from walk_panels(panel.get("panels", []))


def query_panels() -> list[dict[str, Any]]:
    return [p for p in walk_panels(load_dashboard()["panels"]) if p.get("type") != "row"]


def test_dashboard_is_importable_grafana_json() -> None:
    dashboard = load_dashboard()
    assert dashboard["schemaVersion"] >= 36
    assert dashboard["uid"] == "crmsync"
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert variables["DS_PROMETHEUS"]["type"] == "datasource"
    assert variables["DS_PROMETHEUS"]["query"] == "prometheus"
    ids = [panel["id"] for panel in walk_panels(dashboard["panels"])]
    assert len(ids) == len(set(ids)), "panel ids must be unique"
    for panel in walk_panels(dashboard["panels"]):
        pos = panel["gridPos"]
        assert pos["x"] >= 0 and pos["x"] + pos["w"] <= 24, panel["title"]


def test_every_dashboard_panel_has_queries_on_the_prometheus_datasource() -> None:
    panels = query_panels()
    assert len(panels) >= 10
    for panel in panels:
        assert panel["datasource"]["uid"] == "${DS_PROMETHEUS}", panel["title"]
        assert panel["targets"], f"panel {panel['title']!r} has no targets"
        for target in panel["targets"]:
            assert target["expr"].strip(), f"panel {panel['title']!r}: empty expr"
            assert target["datasource"]["uid"] == "${DS_PROMETHEUS}", panel["title"]


def test_dashboard_queries_use_only_exported_metrics() -> None:
    exported = exported_sample_names()
    used: set[str] = set()
    for panel in query_panels():
        for target in panel["targets"]:
            names = metric_names(target["expr"])
            unknown = names - exported - EXTERNAL_METRICS
            assert not unknown, f"panel {panel['title']!r}: unknown metrics {sorted(unknown)}"
            used |= names
    # The panels the dashboard promises (INTERFACE §6 metrics).
    for name in ("crmsync_records_synced_total", "crmsync_quo_requests_total",
                 "crmsync_rate_limit_wait_seconds_total",
                 "crmsync_rate_limited_responses_total", "crmsync_queue_depth",
                 "crmsync_sync_lag_seconds", "crmsync_dead_letters",
                 "crmsync_webhook_events_total", "crmsync_activities_logged_total",
                 "crmsync_tenant_up", "crmsync_webhook_subscription_healthy",
                 "crmsync_quo_request_duration_seconds_bucket"):
        assert name in used, f"no panel shows {name}"


def test_dashboard_variables_are_defined() -> None:
    dashboard = load_dashboard()
    defined = {v["name"] for v in dashboard["templating"]["list"]} | GRAFANA_BUILTINS
    for panel in query_panels():
        for target in panel["targets"]:
            for match in VARIABLE.finditer(target["expr"]):
                name = match.group(1) or match.group(2)
                assert name in defined, f"panel {panel['title']!r}: undefined ${name}"


# -- alert rules ------------------------------------------------------------------------


@dataclass
class Rule:
    name: str
    expr: str = ""
    fields: dict[str, str] = field(default_factory=dict)


def scan_rules(text: str) -> list[Rule]:
    """`- alert:` entries with their expr (inline or `|` block) and other `key: value` lines."""
    rules: list[Rule] = []
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        line = lines[i]
        stripped = line.strip()
        i += 1
        if stripped.startswith("- record:"):
            raise AssertionError("recording rules are not scanned; extend scan_rules")
        if stripped.startswith("- alert:"):
            rules.append(Rule(stripped.removeprefix("- alert:").strip()))
            continue
        if not rules or not stripped or stripped.startswith("#") or ":" not in stripped:
            continue
        key, _, value = stripped.partition(":")
        value = value.strip()
        if key == "expr":
            if value in ("|", "|-", ">", ">-"):
                indent = len(line) - len(line.lstrip())
                block = []
                while i < len(lines) and (
                    not lines[i].strip() or len(lines[i]) - len(lines[i].lstrip()) > indent
                ):
                    block.append(lines[i].strip())
                    i += 1
                value = " ".join(part for part in block if part)
            rules[-1].expr = value.strip("'\"")
        else:
            rules[-1].fields[key] = value.strip("'\"")
    return rules


def alert_rules() -> list[Rule]:
    return scan_rules(RULES.read_text())


def test_alert_rules_are_complete() -> None:
    rules = alert_rules()
    names = [rule.name for rule in rules]
    assert len(names) == len(set(names)), "alert names must be unique"
    for rule in rules:
        assert rule.expr, rule.name
        assert rule.fields.get("severity") in ("critical", "warning"), rule.name
        assert rule.fields.get("summary"), rule.name
        assert rule.fields.get("description"), rule.name
    # The conditions operators asked for.
    exprs = {rule.name: rule.expr for rule in rules}
    assert exprs["CrmsyncTenantDown"] == "crmsync_tenant_up == 0"
    assert exprs["CrmsyncDown"] == 'up{job="crmsync"} == 0'
    assert exprs["CrmsyncStageStalled"] == "crmsync_stalled == 1"
    assert "crmsync_records_synced_total" in exprs["CrmsyncSyncStalled"]
    assert "crmsync_last_successful_sync_timestamp_seconds" in exprs["CrmsyncNoRecentSync"]
    assert "increase(crmsync_rate_limited_responses_total[10m])" in exprs[
        "CrmsyncQuoRateLimited"]
    assert "delta(crmsync_dead_letters[1h])" in exprs["CrmsyncDeadLettersGrowing"]
    assert exprs["CrmsyncWebhookSubscriptionUnhealthy"] == (
        "crmsync_webhook_subscription_healthy == 0")


def test_alert_rules_use_only_exported_metrics() -> None:
    exported = exported_sample_names()
    for rule in alert_rules():
        names = metric_names(rule.expr)
        assert names, f"{rule.name}: no metric found in {rule.expr!r}"
        unknown = names - exported - EXTERNAL_METRICS - PLANNED_METRICS
        assert not unknown, f"{rule.name}: unknown metrics {sorted(unknown)}"


def test_every_alert_has_a_firing_and_a_silent_unit_test() -> None:
    firing: set[str] = set()
    silent: set[str] = set()
    current = None
    for raw in RULE_TESTS.read_text().splitlines():
        line = raw.split("#", 1)[0].strip()
        if line.startswith("alertname:"):
            current = line.removeprefix("alertname:").strip()
        elif line.startswith("exp_alerts:") and current is not None:
            (silent if line.removeprefix("exp_alerts:").strip() == "[]" else firing).add(current)
            current = None
    names = {rule.name for rule in alert_rules()}
    assert names - firing == set(), "alerts never tested firing"
    assert names - silent == set(), "alerts never tested silent"
    assert (firing | silent) - names == set(), "tests for alerts that do not exist"


def test_rule_files_parse_as_yaml() -> None:
    yaml = pytest.importorskip("yaml", reason="PyYAML not installed (promtool checks YAML)")
    groups = yaml.safe_load(RULES.read_text())["groups"]
    loaded = [rule["alert"] for group in groups for rule in group["rules"]]
    assert loaded == [rule.name for rule in alert_rules()]
    assert yaml.safe_load(RULE_TESTS.read_text())["rule_files"] == ["crmsync.rules.yml"]


# -- systemd unit -----------------------------------------------------------------------


def parse_unit(text: str) -> dict[str, dict[str, list[str]]]:
    """Sections -> key -> every value in order (systemd keys repeat, e.g. LoadCredential)."""
    sections: dict[str, dict[str, list[str]]] = {}
    current: dict[str, list[str]] | None = None
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        assert not line.endswith("\\"), f"line continuations are not parsed: {line}"
        if line.startswith("["):
            current = sections.setdefault(line.strip("[]"), {})
            continue
        assert current is not None, f"directive outside a section: {line}"
        key, sep, value = line.partition("=")
        assert sep, f"not a directive: {line}"
        current.setdefault(key.strip(), []).append(value.strip())
    return sections


def seconds(value: str) -> float:
    match = re.fullmatch(r"(\d+(?:\.\d+)?)\s*(s|sec|min|m)?", value)
    assert match, f"unsupported time span {value!r}"
    return float(match.group(1)) * (60 if match.group(2) in ("min", "m") else 1)


def service() -> dict[str, list[str]]:
    return parse_unit(UNIT.read_text())["Service"]


def example_config() -> dict[str, Any]:
    return tomllib.loads(CONFIG_EXAMPLE.read_text())


REQUIRED_SERVICE = {
    "Type": "notify",
    "NotifyAccess": "main",
    "WatchdogSec": "30",
    "ExecReload": "/bin/kill -HUP $MAINPID",
    "Restart": "on-failure",
    "DynamicUser": "yes",
    "StateDirectory": "crmsync",
    "UMask": "0077",
    "ProtectSystem": "strict",
    "ProtectHome": "yes",
    "NoNewPrivileges": "yes",
    "PrivateTmp": "yes",
    "PrivateDevices": "yes",
    "ProtectKernelTunables": "yes",
    "ProtectKernelModules": "yes",
    "ProtectKernelLogs": "yes",
    "ProtectControlGroups": "yes",
    "RestrictAddressFamilies": "AF_UNIX AF_INET AF_INET6",
    "RestrictNamespaces": "yes",
    "LockPersonality": "yes",
    "SystemCallArchitectures": "native",
    "CapabilityBoundingSet": "",
}


def test_unit_has_the_directives_the_daemon_relies_on() -> None:
    unit = service()
    for key, value in REQUIRED_SERVICE.items():
        assert unit.get(key) == [value], f"{key}= should be {value!r}, is {unit.get(key)}"
    assert "@system-service" in unit["SystemCallFilter"]
    assert unit["RestartSec"]
    (exec_start,) = unit["ExecStart"]
    assert exec_start.split()[0].startswith("/"), "systemd wants an absolute path"
    assert exec_start.endswith(" run -c /etc/crmsync/crmsync.toml"), exec_start
    assert parse_unit(UNIT.read_text())["Install"]["WantedBy"] == ["multi-user.target"]


def test_unit_stop_timeout_exceeds_the_drain_deadline() -> None:
    shutdown_timeout = example_config()["daemon"]["shutdown_timeout"]
    (stop,) = service()["TimeoutStopSec"]
    assert seconds(stop) >= shutdown_timeout + 10, (
        f"TimeoutStopSec={stop} leaves no time after a {shutdown_timeout} s drain")


def test_config_example_keeps_state_in_the_state_directory() -> None:
    state_path = example_config()["daemon"]["state_path"]
    assert state_path.startswith("/var/lib/crmsync/")  # StateDirectory=crmsync


def credential_references(config: dict[str, Any]) -> set[str]:
    """NAME of every "file:%d/NAME" secret in the config."""
    names = set()
    for tenant in config["tenants"]:
        for value in tenant.values():
            if isinstance(value, str) and value.startswith("file:%d/"):
                names.add(value.removeprefix("file:%d/"))
    return names


def test_every_credential_of_the_config_example_is_loaded_by_the_unit() -> None:
    loaded = {line.split(":", 1)[0] for line in service()["LoadCredential"]}
    referenced = credential_references(example_config())
    assert referenced
    assert referenced <= loaded, f"missing LoadCredential= for {sorted(referenced - loaded)}"


def test_config_example_is_valid(tmp_path: Path) -> None:
    """What `crmsync check-config` says under systemd, with dummy credential files."""
    for name in credential_references(example_config()):
        (tmp_path / name).write_text("dummy-secret\n")
    config = parse_config(CONFIG_EXAMPLE.read_text(), str(CONFIG_EXAMPLE),
                          {"CREDENTIALS_DIRECTORY": str(tmp_path)})
    assert config.daemon.log_format == "json"
    assert config.http.public_url is not None


# -- the tools themselves, when installed -----------------------------------------------


def run_tool(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False)


def verifiable_unit(directory: Path) -> Path:
    """The unit with ExecStart's binary swapped for one that exists here.

    `systemd-analyze verify` fails when ExecStart= names a missing file, and
    /opt/crmsync/venv/bin/crmsync only exists on a server; everything else is checked as is.
    """
    binary = shutil.which("true") or sys.executable
    text = re.sub(r"(?m)^ExecStart=(\S+)", f"ExecStart={binary}", UNIT.read_text())
    path = directory / UNIT.name
    path.write_text(text)
    return path


def test_systemd_analyze_verify(tmp_path: Path) -> None:
    tool = shutil.which("systemd-analyze")
    if tool is None:
        pytest.skip("systemd-analyze not installed")
    unit = verifiable_unit(tmp_path)
    result = run_tool(tool, "verify", "--man=no", str(unit))
    # verify exits 0 on "Unknown key" or "Failed to parse ..., ignoring": read stderr too.
    ours = [line for line in result.stderr.splitlines() if UNIT.name in line]
    assert result.returncode == 0, result.stderr
    assert ours == [], "\n".join(ours)


def test_systemd_analyze_verify_replica_instances(tmp_path: Path) -> None:
    """`crmsync@.service` is crmsync.service installed as a template, plus the drop-in."""
    tool = shutil.which("systemd-analyze")
    if tool is None:
        pytest.skip("systemd-analyze not installed")
    template = tmp_path / "crmsync@.service"
    verifiable_unit(tmp_path).rename(template)
    binary = shutil.which("true") or sys.executable
    drop_in = (DEPLOY / "replicas" / "replica.conf").read_text()
    assert "ExecStart=/opt/crmsync/venv/bin/crmsync run -c /etc/crmsync/replica-%i.toml" \
        in drop_in
    (tmp_path / "crmsync@.service.d").mkdir()
    (tmp_path / "crmsync@.service.d" / "replica.conf").write_text(
        re.sub(r"(?m)^ExecStart=(\S+)", f"ExecStart={binary}", drop_in)
    )
    result = run_tool(tool, "verify", "--man=no", str(tmp_path / "crmsync@2.service"))
    ours = [line for line in result.stderr.splitlines() if "crmsync@" in line]
    assert result.returncode == 0, result.stderr
    assert ours == [], "\n".join(ours)


def test_systemd_analyze_security_exposure(tmp_path: Path) -> None:
    tool = shutil.which("systemd-analyze")
    if tool is None:
        pytest.skip("systemd-analyze not installed")
    unit = verifiable_unit(tmp_path)
    result = run_tool(tool, "security", "--offline=true", "--no-pager", str(unit))
    match = re.search(r"Overall exposure level for \S+: (\d+\.\d+)", result.stdout)
    if result.returncode != 0 and match is None:
        pytest.skip(f"systemd-analyze security --offline unsupported: {result.stderr.strip()}")
    assert match, result.stdout[-2000:]
    assert float(match.group(1)) <= 2.0, result.stdout  # "OK" is below 4.9; we are at 1.4


def promtool() -> str:
    tool = shutil.which("promtool")
    if tool is None:
        pytest.skip("promtool not installed (Debian: apt-get install prometheus)")
    return tool


def test_promtool_check_rules() -> None:
    result = run_tool(promtool(), "check", "rules", str(RULES))
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(alert_rules())} rules found" in result.stdout


def test_promtool_test_rules() -> None:
    result = run_tool(promtool(), "test", "rules", str(RULE_TESTS))
    assert result.returncode == 0, result.stdout + result.stderr


def test_promtool_check_config() -> None:
    result = run_tool(promtool(), "check", "config", str(PROMETHEUS_CONFIG))
    assert result.returncode == 0, result.stdout + result.stderr
