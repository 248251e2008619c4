"""The dashboard's rate-limit utilisation is per Quo API key, not per tenant.

Quo limits requests per key, and tenants may share a key: a per-tenant line at 50 %
each hid two tenants at 100 % of one key. The panel joins each tenant's requests onto
`crmsync_tenant_quo_key` (the key's fingerprint) and sums by key. Checked as text, and
evaluated by promtool on series where two tenants (one of them in two daemons) share a
key: their key is at 100 %, the other key at 50 %.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "crmsync" / "deploy_files"
DASHBOARD = DEPLOY / "grafana" / "crmsync.json"
TITLE = "Rate-limit utilisation per Quo key"


def utilisation_panel() -> dict[str, Any]:
    def walk(panels: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return [q for p in panels for q in (p, *walk(p.get("panels", [])))]

    (panel,) = [p for p in walk(json.loads(DASHBOARD.read_text())["panels"])
                if p.get("title") == TITLE]
    return panel


def test_the_utilisation_panel_sums_by_key_through_the_key_gauge() -> None:
    (target,) = utilisation_panel()["targets"]
    expr = target["expr"]
    assert expr.startswith("sum by (key) (rate(crmsync_quo_requests_total{")
    assert "* on (instance, tenant) group_left (key) crmsync_tenant_quo_key{" in expr
    assert expr.endswith(") / $quo_rps")
    assert "$tenant" not in expr  # a key's load is all of its tenants'
    assert target["legendFormat"] == "key {{key}}"


SERIES = [
    # (instance, tenant, key, route, requests per second)
    ("a:8787", "acme", "k1", "/contacts", 4),
    ("a:8787", "acme", "k1", "/contacts/{id}", 1),
    ("a:8787", "beta", "k1", "/contacts", 4),
    ("b:8787", "acme", "k1", "/contacts", 1),  # a second daemon, a tenant named alike
    ("a:8787", "gamma", "k2", "/contacts", 5),
]


def promtool_test(expr: str) -> str:
    lines = [
        f"rule_files: [{json.dumps(str(DEPLOY / 'prometheus' / 'crmsync.rules.yml'))}]",
        "evaluation_interval: 1m",
        "tests:",
        "  - interval: 1m",
        "    input_series:",
    ]
    keys = set()
    for instance, tenant, key, route, rps in SERIES:
        labels = (f'instance="{instance}", job="crmsync", tenant="{tenant}", '
                  f'method="POST", route="{route}", status="201"')
        lines += [f"      - series: 'crmsync_quo_requests_total{{{labels}}}'",
                  f"        values: '0+{rps * 60}x20'"]
        keys.add((instance, tenant, key))
    for instance, tenant, key in sorted(keys):
        labels = f'instance="{instance}", job="crmsync", tenant="{tenant}", key="{key}"'
        lines += [f"      - series: 'crmsync_tenant_quo_key{{{labels}}}'",
                  "        values: '1x20'"]
    lines += [
        "    promql_expr_test:",
        f"      - expr: {json.dumps(expr)}",
        "        eval_time: 10m",
        "        exp_samples:",
        "          - labels: '{key=\"k1\"}'",
        "            value: 1",
        "          - labels: '{key=\"k2\"}'",
        "            value: 0.5",
    ]
    return "\n".join(lines) + "\n"


def test_the_utilisation_panel_adds_up_the_tenants_of_one_key(tmp_path: Path) -> None:
    tool = shutil.which("promtool")
    if tool is None:
        pytest.skip("promtool not installed (Debian: apt-get install prometheus)")
    (target,) = utilisation_panel()["targets"]
    expr = (target["expr"].replace("$__rate_interval", "5m")
            .replace('"$instance"', '".*"').replace("$quo_rps", "10"))
    test_file = tmp_path / "per_key.test.yml"
    test_file.write_text(promtool_test(expr))
    result = subprocess.run([tool, "test", "rules", str(test_file)], capture_output=True,
                            text=True, timeout=60, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
