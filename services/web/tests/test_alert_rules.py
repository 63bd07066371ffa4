"""The shipped monitoring (monitoring/ at the repository's root) is checked by Prometheus' own
promtool: the alert rules load and pass their unit tests, the example configuration parses,
the dashboard's queries parse, and every srcflask_* figure they use is one the app exports.

promtool comes from Debian's prometheus package (scripts/system-packages installs it); its
absence fails these tests, it never skips them."""
import json
import re
import shutil
import subprocess

import pytest
import yaml

from srcflask.metrics import PROCESS_FIGURES

from .prodstack import REPO_ROOT

MONITORING = REPO_ROOT / "monitoring"
PROMETHEUS = MONITORING / "prometheus"
DASHBOARD = MONITORING / "grafana" / "srcflask.json"
METRIC_NAME = re.compile(r'(?<!")\bsrcflask_[a-z_]+\b')  # not a job's name (job="srcflask_web")


def promtool(*args, cwd=PROMETHEUS):
    command = shutil.which("promtool")
    assert command, "promtool is missing: run services/web/scripts/system-packages (Debian's prometheus package)"
    return subprocess.run([command, *args], cwd=cwd, capture_output=True, text=True, timeout=120)


def alerts():
    return {rule["alert"]: rule for group in yaml.safe_load((PROMETHEUS / "alerts.yml").read_text())["groups"]
            for rule in group["rules"]}


def dashboard_queries():
    panels = json.loads(DASHBOARD.read_text())["panels"]
    return [(panel["title"], target) for panel in panels for target in panel.get("targets", [])]


def test_the_alert_rules_load():
    result = promtool("check", "rules", "alerts.yml")
    assert result.returncode == 0, result.stdout + result.stderr
    assert set(alerts()) == {"SrcflaskQueueStalled", "SrcflaskWriterDown", "SrcflaskHighErrorRate", "SrcflaskNotReady",
                             "SrcflaskModelsDiskFull"}


def test_the_alert_rules_pass_their_unit_tests():
    result = promtool("test", "rules", "alerts_test.yml")
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_alert_is_tested_firing_and_silent():
    tests = yaml.safe_load((PROMETHEUS / "alerts_test.yml").read_text())["tests"]
    checks = [check for test in tests for check in test["alert_rule_test"]]
    for name in alerts():
        outcomes = {bool(check["exp_alerts"]) for check in checks if check["alertname"] == name}
        assert outcomes == {True, False}, f"{name} needs a test where it fires and one where it does not"


def test_the_example_configuration_parses():
    # --syntax-only: the token file it names exists only where Prometheus runs.
    result = promtool("check", "config", "--syntax-only", "prometheus.yml")
    assert result.returncode == 0, result.stdout + result.stderr
    config = yaml.safe_load((PROMETHEUS / "prometheus.yml").read_text())
    assert config["rule_files"] == ["alerts.yml"]
    jobs = {job["job_name"] for job in config["scrape_configs"]}
    # The jobs the alert rules name.
    assert set(re.findall(r'job="([a-z_]+)"', (PROMETHEUS / "alerts.yml").read_text())) <= jobs


def test_the_dashboards_queries_parse(tmp_path):
    """promtool has no query checker: each query becomes a recording rule, which it parses."""
    queries = dashboard_queries()
    assert queries and all(target["datasource"]["uid"] == "${datasource}" for _, target in queries)
    recorded = [{"record": f"dashboard:query_{number}", "expr": target["expr"]}
                for number, (_, target) in enumerate(queries)]
    rules = {"groups": [{"name": "dashboard", "rules": recorded}]}
    (tmp_path / "dashboard_rules.yml").write_text(yaml.safe_dump(rules))
    result = promtool("check", "rules", "dashboard_rules.yml", cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    ids = [panel["id"] for panel in json.loads(DASHBOARD.read_text())["panels"]]
    assert len(ids) == len(set(ids))


@pytest.fixture
def exported_names(client):
    """The names of every sample the app's /metrics can carry: a scrape's, plus the figures
    of a process that runs a writer (PROCESS_FIGURES), which this test app does not. A request
    first: request series exist from the first one counted."""
    assert client.get("/healthz").status_code == 200
    metrics = client.get("/metrics").get_data(as_text=True)
    names = {line.split("{")[0].split(" ")[0] for line in metrics.splitlines() if line and not line.startswith("#")}
    return names | set(PROCESS_FIGURES)


def test_alerts_and_dashboard_use_only_figures_the_app_exports(exported_names):
    used = {name for rule in alerts().values() for name in METRIC_NAME.findall(rule["expr"])}
    used |= {name for _, target in dashboard_queries() for name in METRIC_NAME.findall(target["expr"])}
    assert used, "no srcflask_ figure found"
    assert used <= exported_names, f"not exported by the app: {sorted(used - exported_names)}"
