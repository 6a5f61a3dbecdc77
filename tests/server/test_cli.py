"""The `microadjust` command: clear messages and exit codes for what a user can get wrong."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from microadjust.cli import main

from .helpers import DEMO_RULES


def test_rules_validate_accepts_the_demo_rules(capsys):
    assert main(["rules", "validate", str(DEMO_RULES)]) == 0
    assert "OK" in capsys.readouterr().out


def test_rules_validate_prints_path_errors_and_exits_1(tmp_path, capsys):
    doc = json.loads(DEMO_RULES.read_text())
    doc["rules"][0]["ops"] = [{"op": "setHTML", "html": "<b>x</b>"}]
    path = tmp_path / "rules.json"
    path.write_text(json.dumps(doc))
    assert main(["rules", "validate", str(path)]) == 1
    err = capsys.readouterr().err
    assert "problem(s)" in err and "rules[0].ops[0]" in err


@pytest.mark.parametrize("content, message", [(None, "not found"), ("{nope", "invalid JSON at line 1"), ("[]", "expected a JSON object")])
def test_rules_validate_names_file_problems(tmp_path, capsys, content, message):
    path = tmp_path / "rules.json"
    if content is not None:
        path.write_text(content)
    assert main(["rules", "validate", str(path)]) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"microadjust: rules file {path}") and message in err


@pytest.mark.parametrize("args, message", [
    (["--site", "shop"], "site spec 'shop': expected KEY=ORIGIN"),
    (["--site", "shop=https://shop.test/path"], "is not scheme://host[:port]"),
    ([], "no site configured"),
    (["--demo", "--rules", "/nonexistent/rules.json"], "rules file /nonexistent/rules.json: not found"),
])
def test_serve_refuses_bad_configuration_with_a_clear_message(capsys, args, message):
    assert main(["serve", "--port", "1", *args]) == 1
    assert message in capsys.readouterr().err


@pytest.mark.parametrize("limit, message", [
    ("rate_per_s=fast", "rate_per_s: 'fast' is not a number"),
    ("max_batch=1.5", "max_batch: '1.5' is not a whole number"),
    ("rate_burst=0", "rate_burst: '0' must be above 0"),
    ("speed=1", "'speed=1': expected NAME=VALUE with NAME one of bad_message_budget,"),
    ("max_frame=10", "limits.max_frame: at least 1024 bytes"),
])
def test_serve_refuses_a_bad_limit_naming_it(capsys, limit, message):
    try:
        code = main(["serve", "--demo", "--port", "1", "--limit", limit])
    except SystemExit as exc:  # argparse's own error exit
        code = exc.code
    assert code in (1, 2)
    assert message in capsys.readouterr().err


def test_limits_given_on_the_command_line_reach_the_settings():
    from microadjust.cli import build_settings, parser

    args = parser().parse_args(["serve", "--demo", "--limit", "rate_per_s=500", "--limit", "rate_burst=1000",
                                 "--limit", "tick_ms=0", "--drain-timeout", "3"])
    limits = build_settings(args).limits
    assert (limits.rate_per_s, limits.rate_burst, limits.tick_ms, limits.drain_timeout_s) == (500.0, 1000, 0, 3.0)
    assert isinstance(limits.rate_burst, int) and isinstance(limits.rate_per_s, float)


@pytest.mark.parametrize("given, seconds", [("30d", 2_592_000), ("12h", 43_200), ("90m", 5_400), ("45s", 45), ("600", 600)])
def test_retention_and_store_caps_reach_the_embedded_store(given, seconds, tmp_path):
    from microadjust.app import create_app
    from microadjust.cli import build_settings, parser

    args = parser().parse_args(["serve", "--demo", "--data-dir", str(tmp_path), "--retention", given,
                                "--limit", "store_visitors=500",
                                "--limit", "store_sessions_per_visitor=3"])
    settings = build_settings(args)
    assert settings.retention_s == seconds
    app = create_app(settings)
    store = app.state.store
    app.state.log.close()
    assert (store.retention_s, store.max_visitors, store.max_sessions_per_visitor) == (seconds, 500, 3)


@pytest.mark.parametrize("given, message", [
    ("3x", "'3x': expected seconds or a number with s, m, h or d, e.g. 30d"),
    ("0", "'0': expected between 1 second and 10 years"),
    ("d", "'d': expected seconds or a number with s, m, h or d"),
])
def test_serve_refuses_a_bad_retention_naming_it(capsys, given, message):
    with pytest.raises(SystemExit) as exc:
        main(["serve", "--demo", "--port", "1", "--retention", given])
    assert exc.value.code == 2 and message in capsys.readouterr().err


def test_workers_are_started_with_the_parents_retention_limits_and_flags(tmp_path):
    from microadjust.cli import build_settings, parser
    from microadjust.workers import Supervisor

    args = parser().parse_args(["serve", "--demo", "--data-dir", str(tmp_path), "--workers", "2",
                                "--redis", "redis://127.0.0.1:1", "--retention", "12h", "--public-rules",
                                "--limit", "rate_per_s=50", "--limit", "store_visitors=7", "--drain-timeout", "3"])
    parent = build_settings(args)
    cmd = Supervisor(parent, args)._worker_command(0)
    assert cmd[1:4] == ["-m", "microadjust", "serve"]
    worker_args = parser().parse_args(cmd[3:])
    worker_args.redis = parent.redis_url  # passed through the environment, not the command line
    worker = build_settings(worker_args)
    assert worker.limits == parent.limits and worker.limits.rate_per_s == 50.0
    assert (worker.retention_s, worker.public_rules, worker.demo) == (43_200, True, True)


def test_python_dash_m_runs_the_cli():
    out = subprocess.run([sys.executable, "-m", "microadjust", "rules", "validate", str(DEMO_RULES)],
                         capture_output=True, text=True, timeout=30)
    assert out.returncode == 0 and "OK" in out.stdout


def test_demo_rules_are_edited_as_a_copy_in_the_data_dir_never_in_the_package(tmp_path, monkeypatch):
    import microadjust.cli as cli

    seen = {}

    class FakeServer:  # stands in for uvicorn: this test is about the settings serve builds
        def __init__(self, app, settings, log_level):
            seen["settings"] = settings

        def run(self):
            pass

    monkeypatch.setattr(cli, "Server", FakeServer)
    assert main(["serve", "--demo", "--port", "18999", "--data-dir", str(tmp_path)]) == 0
    settings = seen["settings"]
    assert settings.rules_file == tmp_path / "demo-rules.json"
    assert settings.rules_file.read_text() == DEMO_RULES.read_text()
    assert settings.sites == {"demo": ["http://127.0.0.1:18999", "http://localhost:18999"]}
    assert settings.admin_token  # generated and printed when none is given
