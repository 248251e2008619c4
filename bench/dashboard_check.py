"""Evaluate every dashboard query and alert rule against a real Prometheus scraping the demo.

    python bench/dashboard_check.py [--contacts 200] [--prometheus /usr/bin/prometheus]

Starts `crmsync demo --contacts N --keep-running`, then a throwaway Prometheus (Debian's
`prometheus` package) on 127.0.0.1 that scrapes the demo's /metrics every second with
crmsync/deploy_files/prometheus/crmsync.rules.yml loaded. Once the demo's sync is done
and a few scrapes are in, every PromQL expression of the dashboard,
crmsync/deploy_files/grafana/crmsync.json (panel targets and template-variable
selectors), and every rule expression (as loaded by Prometheus) is sent to
/api/v1/query. Prints per panel and per rule: evaluated without error, returned data,
and which referenced metrics the demo does not export. Exit 1 if any expression errors or
any rule's evaluation is unhealthy; no data is only reported (series of failures that
did not happen, such as 429s or dead letters, cannot exist). Before the scrapes are
counted, the demo's printed curl lines are sent a few times so that webhook, activity
and live-sync series exist. Every child process is stopped on exit; --timeout bounds
the whole run.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
DASHBOARD = ROOT / "crmsync" / "deploy_files" / "grafana" / "crmsync.json"
RULES = ROOT / "crmsync" / "deploy_files" / "prometheus" / "crmsync.rules.yml"
METRICS_URL = re.compile(r"http://127\.0\.0\.1:\d+/metrics")
# Grafana's variables, as a query over all instances and tenants would expand them.
VARIABLES = {
    "__rate_interval": "1m",
    "__interval": "15s",
    "__range": "5m",
    "instance": ".*",
    "tenant": ".*",
    "quo_rps": "10",
}
VARIABLE = re.compile(r"\$\{(\w+)\}|\$(\w+)")
LABEL_VALUES = re.compile(r"^\s*label_values\((.*),\s*\w+\s*\)\s*$", re.DOTALL)
STRING = re.compile(r'"(?:[^"\\]|\\.)*"')
METRIC = re.compile(r"\b(crmsync_[a-z0-9_]+|up|process_[a-z0-9_]+)\b(?!\s*\()")


@dataclass
class Expr:
    group: str  # panel title, "variable NAME" or "rule NAME"
    promql: str
    ok: bool = False
    rows: int = 0
    error: str = ""
    missing: list[str] = field(default_factory=list)


def substitute(expr: str) -> str:
    def value(match: re.Match[str]) -> str:
        name = match.group(1) or match.group(2)
        if name not in VARIABLES:
            raise ValueError(f"unknown dashboard variable ${name} in {expr!r}")
        return VARIABLES[name]

    return VARIABLE.sub(value, expr)


def metric_names(expr: str) -> set[str]:
    """Metric names an expression selects (string literals and function names left out)."""
    return set(METRIC.findall(STRING.sub('""', expr)))


def walk_panels(panels: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    for panel in panels:
        yield panel
        yield from walk_panels(panel.get("panels", []))


def dashboard_exprs(path: Path) -> list[Expr]:
    dashboard = json.loads(path.read_text())
    exprs = []
    for variable in dashboard.get("templating", {}).get("list", []):
        query = variable.get("query")
        if variable.get("type") != "query":
            continue
        text = query.get("query", "") if isinstance(query, dict) else str(query)
        match = LABEL_VALUES.match(text)
        exprs.append(Expr(f"variable ${variable['name']}",
                          substitute(match.group(1) if match else text)))
    for panel in walk_panels(dashboard["panels"]):
        if panel.get("type") == "row":
            continue
        for target in panel.get("targets", []):
            exprs.append(Expr(panel["title"], substitute(target["expr"])))
    return exprs


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def api(base: str, path: str, **params: str) -> dict[str, Any]:
    url = f"{base}{path}"
    if params:
        url += "?" + urllib.parse.urlencode(params)
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return dict(json.load(response))
    except urllib.error.HTTPError as exc:  # 400/422 carry the PromQL error as JSON
        return dict(json.load(exc))


class Child:
    """A child process whose output is drained by a thread (and kept for diagnostics)."""

    def __init__(self, name: str, argv: list[str], stop_signal: int = signal.SIGTERM) -> None:
        self.name = name
        self.stop_signal = stop_signal
        self.lines: list[str] = []
        self.proc = subprocess.Popen(
            argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
            start_new_session=True,
        )
        threading.Thread(target=self._drain, daemon=True).start()

    def _drain(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line.rstrip("\n"))

    def wait_for(self, pattern: re.Pattern[str], deadline: float) -> re.Match[str]:
        while time.monotonic() < deadline:
            for line in list(self.lines):
                if match := pattern.search(line):
                    return match
            if self.proc.poll() is not None:
                break
            time.sleep(0.1)
        tail = "\n".join(self.lines[-20:])
        raise RuntimeError(f"{self.name}: no line matching {pattern.pattern!r}\n{tail}")

    def stop(self) -> None:
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                self.proc.send_signal(self.stop_signal)
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


CURL_POST = re.compile(
    r"^\s*curl -s -X (?P<method>POST|PATCH) .*-d '(?P<body>.+)' (?P<url>http\S+)$"
)


def send_live_traffic(demo_output: list[str], rounds: int) -> str:
    """Do what the demo's printed curl lines do, `rounds` times: signed webhooks flow.

    The SMS and call lines make the Quo simulator deliver `message.received`,
    `call.completed` and `call.summary.completed` to the daemon (webhook and activity
    series); the CRM line makes Attio deliver `record.updated` (a live contact write).
    """
    requests = [m for line in demo_output if (m := CURL_POST.match(line))]
    if not requests:
        raise RuntimeError("the demo printed no curl lines to try webhooks")
    sent = 0
    for round_ in range(rounds):
        for match in requests:
            body = json.loads(match["body"])
            if "text" in body:
                body["text"] = f"{body['text']} ({round_})"
            if "job_title" in body:
                body["job_title"] = f"{body['job_title']} {round_}"
            request = urllib.request.Request(
                match["url"], data=json.dumps(body).encode(), method=match["method"],
                headers={"content-type": "application/json"},
            )
            with urllib.request.urlopen(request, timeout=10) as response:
                response.read()
            sent += 1
    return f"{sent} simulator requests that send webhooks"


def prometheus_config(directory: Path, target: str) -> Path:
    rules = directory / "crmsync.rules.yml"
    shutil.copyfile(RULES, rules)
    config = directory / "prometheus.yml"
    config.write_text(f"""
global:
  scrape_interval: 1s
  evaluation_interval: 1s
rule_files: ["{rules}"]
scrape_configs:
  - job_name: crmsync
    scrape_timeout: 1s
    static_configs:
      - targets: ["{target}"]
""")
    return config


def wait_until(what: str, deadline: float, check: Any) -> None:
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError, ValueError, KeyError):
            if check():
                return
        time.sleep(0.5)
    raise RuntimeError(f"timed out waiting for {what}")


def evaluate(base: str, exprs: list[Expr], present: set[str]) -> None:
    for expr in exprs:
        reply = api(base, "/api/v1/query", query=expr.promql)
        if reply.get("status") == "success":
            expr.ok = True
            data = reply["data"]
            expr.rows = len(data["result"]) if data["resultType"] in ("vector", "matrix") else 1
        else:
            expr.error = f"{reply.get('errorType')}: {reply.get('error')}"
        expr.missing = sorted(metric_names(expr.promql) - present)


def report(title: str, exprs: list[Expr]) -> None:
    print(f"\n{title}")
    groups: dict[str, list[Expr]] = {}
    for expr in exprs:
        groups.setdefault(expr.group, []).append(expr)
    width = max(len(group) for group in groups)
    for group, items in groups.items():
        ok = sum(expr.ok for expr in items)
        with_data = sum(expr.rows > 0 for expr in items)
        missing = sorted({name for expr in items for name in expr.missing})
        note = f"  (not exported by the demo: {', '.join(missing)})" if missing else ""
        print(f"  {group:<{width}}  ok {ok}/{len(items)}  data {with_data}/{len(items)}{note}")
        for expr in items:
            if expr.error:
                print(f"      ERROR {expr.error}\n        in {expr.promql}")
    ok = sum(expr.ok for expr in exprs)
    with_data = sum(expr.rows > 0 for expr in exprs)
    print(f"  total: {len(exprs)} expressions, {ok} evaluated without error, "
          f"{with_data} returned data")


def run(args: argparse.Namespace) -> int:
    deadline = time.monotonic() + args.timeout
    prometheus_bin = shutil.which(args.prometheus)
    if prometheus_bin is None:
        print(f"{args.prometheus} not found (Debian: apt-get install prometheus)", file=sys.stderr)
        return 2
    dashboard_path = Path(args.dashboard).resolve()
    dashboard = dashboard_exprs(dashboard_path)
    children: list[Child] = []
    with tempfile.TemporaryDirectory(prefix="crmsync-dashboard-") as tmp:
        try:
            # Ctrl-C, not SIGTERM: the demo then drains and stops its simulators. Its
            # config and state go in the temporary directory, removed with it.
            demo = Child("demo", [sys.executable, "-m", "crmsync", "demo", "--contacts",
                                  str(args.contacts), "--keep-running",
                                  "--dir", str(Path(tmp) / "demo")], signal.SIGINT)
            children.append(demo)
            metrics_url = demo.wait_for(METRICS_URL, deadline).group(0)
            target = urllib.parse.urlsplit(metrics_url).netloc
            port = free_port()
            base = f"http://127.0.0.1:{port}"
            config = prometheus_config(Path(tmp), target)
            children.append(Child("prometheus", [
                prometheus_bin, f"--config.file={config}",
                f"--storage.tsdb.path={Path(tmp) / 'data'}",
                f"--web.listen-address=127.0.0.1:{port}", "--log.level=warn",
            ]))
            started = time.monotonic()
            wait_until("Prometheus ready", deadline,
                       lambda: urllib.request.urlopen(f"{base}/-/ready", timeout=2).status == 200)
            demo.wait_for(re.compile(r"Running until Ctrl-C"), deadline)
            synced_after = time.monotonic() - started
            traffic = send_live_traffic(demo.lines, args.events)

            def scrape_count() -> int:
                reply = api(base, "/api/v1/query",
                            query='count_over_time(up{job="crmsync"}[10m]) '
                                  'and on () up{job="crmsync"} == 1')
                result = reply["data"]["result"]
                return int(result[0]["value"][1]) if result else 0

            # Scrapes after the sync settled, so its final values are in.
            wanted = scrape_count() + int(args.scrapes)

            def scraped_enough() -> bool:
                return scrape_count() >= wanted

            def rules_evaluated() -> bool:
                groups = api(base, "/api/v1/rules")["data"]["groups"]
                # never evaluated: Go's zero time, "0001-01-01T00:00:00Z"
                return all(not rule["lastEvaluation"].startswith("0001") for group in groups
                           for rule in group["rules"])

            wait_until(f"{args.scrapes} scrapes", deadline, scraped_enough)
            wait_until("every rule evaluated", deadline, rules_evaluated)
            names = api(base, "/api/v1/label/__name__/values")["data"]
            present = set(names)
            rules: list[Expr] = []
            unhealthy: list[str] = []
            for group in api(base, "/api/v1/rules")["data"]["groups"]:
                for rule in group["rules"]:
                    rules.append(Expr(f"rule {rule['name']}", rule["query"]))
                    if rule["health"] != "ok":
                        unhealthy.append(f"{rule['name']}: {rule.get('lastError')}")
            evaluate(base, dashboard, present)
            evaluate(base, rules, present)
            scrapes = api(base, "/api/v1/query",
                          query='count_over_time(up{job="crmsync"}[10m])')["data"]["result"]
            crmsync_series = api(base, "/api/v1/query",
                                 query='count({__name__=~"crmsync_.+"})')["data"]["result"]
        finally:
            for child in reversed(children):
                child.stop()
    print(f"demo: {args.contacts} contacts synced {synced_after:.1f} s after Prometheus "
          f"started; {traffic}; {scrapes[0]['value'][1]} scrapes; "
          f"{crmsync_series[0]['value'][1]} crmsync_* series")
    report(f"Dashboard {dashboard_path}", dashboard)
    report(f"Alert rules {RULES.relative_to(ROOT)} (data = the alert condition holds now)",
           rules)
    for line in unhealthy:
        print(f"  UNHEALTHY rule {line}")
    errors = sum(not expr.ok for expr in dashboard + rules) + len(unhealthy)
    print(f"\n{'FAIL' if errors else 'OK'}: {errors} expressions with errors")
    return 1 if errors else 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--contacts", type=int, default=200)
    parser.add_argument("--dashboard", default=str(DASHBOARD), help="Grafana dashboard JSON")
    parser.add_argument("--prometheus", default="prometheus", help="the server binary")
    parser.add_argument("--events", type=int, default=3,
                        help="rounds of the demo's webhook curl lines to send (default 3)")
    parser.add_argument("--scrapes", type=int, default=5,
                        help="scrapes to wait for after the demo's sync (default 5)")
    parser.add_argument("--timeout", type=float, default=180, help="bound on the whole run (s)")
    args = parser.parse_args()
    # SIGTERM (e.g. from `timeout`) unwinds like Ctrl-C, so the children are stopped.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    try:
        return run(args)
    except RuntimeError as exc:
        print(f"dashboard_check: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
