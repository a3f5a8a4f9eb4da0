"""A broker package that is not installed is one line naming the extra, wherever it shows.

Each test runs a fresh interpreter with an import blocker on ``sys.meta_path`` (as if the
package had never been installed): ``manage.py check`` fails with djq.E013, the worker
stops with a CommandError instead of a traceback, and ``delay()`` raises PublishError.
"""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT

#: argv: blocked module names (comma-separated, "" for none), then a module to run as
#: __main__ ("django") or a script path, then its arguments
RUNNER = '''
import runpy, sys
blocked = [m for m in sys.argv.pop(1).split(",") if m]

class Blocked:
    def find_spec(self, name, path=None, target=None):
        if any(name == m or name.startswith(m + ".") for m in blocked):
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return None

sys.meta_path.insert(0, Blocked())
sys.argv = sys.argv[1:]
if sys.argv[0].endswith(".py"):
    runpy.run_path(sys.argv[0], run_name="__main__")
else:
    runpy.run_module(sys.argv[0], run_name="__main__", alter_sys=True)
'''

DELAY = '''
import django
django.setup()
from django.core.management import call_command
call_command("migrate", verbosity=0)
from djq.exceptions import PublishError
from tests.testapp.tasks import add
try:
    add.delay(1, 2)
except PublishError as exc:
    print(type(exc).__name__ + ":", exc)
else:
    print("sent")
'''

REDIS_HINT = "pip install 'djq[redis]'"


def _run(tmp_path: Path, blocked: str, *args: str, broker: str = "redis://127.0.0.1:1/0",
         extra_env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    runner = tmp_path / "runner.py"
    runner.write_text(RUNNER)
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "tests.settings", "PYTHONPATH": str(ROOT),
           "DJQ_TEST_TMP": str(tmp_path), "DJQ_TEST_BROKER_URL": broker, **(extra_env or {})}
    env.pop("DJQ_TEST_DEFAULT_DB", None)
    return subprocess.run([sys.executable, str(runner), blocked, *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("missing", ["redis", "packaging"])
def test_check_names_the_redis_extra(tmp_path: Path, missing: str) -> None:
    done = _run(tmp_path, missing, "django", "check")
    assert done.returncode != 0
    assert "djq.E013" in done.stderr and f"needs the Python package {missing!r}" in done.stderr, done.stderr
    assert REDIS_HINT in done.stderr


def test_check_is_quiet_when_the_extra_is_installed(tmp_path: Path) -> None:
    done = _run(tmp_path, "", "django", "check")
    assert "djq.E013" not in done.stdout + done.stderr
    assert done.returncode == 0, done.stderr


@pytest.mark.parametrize("skip_checks", [False, True], ids=["checked", "skip-checks"])
def test_worker_start_is_one_command_error_not_a_traceback(tmp_path: Path, skip_checks: bool) -> None:
    done = _run(tmp_path, "redis", "django", "djq_worker", "-P", "solo", *(["--skip-checks"] if skip_checks else []))
    output = done.stdout + done.stderr
    assert done.returncode == 1, output
    assert REDIS_HINT in output
    assert "Traceback" not in output, output
    assert ("CommandError:" if skip_checks else "SystemCheckError:") in output


def test_delay_raises_publish_error_naming_the_extra(tmp_path: Path) -> None:
    script = tmp_path / "delay.py"
    script.write_text(DELAY)
    done = _run(tmp_path, "redis", str(script))
    assert "MissingExtraError:" in done.stdout, done.stdout + done.stderr
    assert REDIS_HINT in done.stdout and "DJQ_BROKER_URL" in done.stdout


def test_djq_broker_on_postgresql_without_psycopg_names_the_postgres_extra(tmp_path: Path) -> None:
    url = os.environ.get("DJQ_TEST_POSTGRES_URL")
    if not url:
        pytest.skip("needs DJQ_TEST_POSTGRES_URL")
    done = _run(tmp_path, "psycopg,psycopg2", "django", "djq_worker", "-P", "solo", "--skip-checks",
                broker="djq://postgres", extra_env={"DJQ_TEST_POSTGRES_URL": url})
    output = done.stdout + done.stderr
    assert done.returncode == 1, output
    assert "pip install 'djq[postgres]'" in output and "Traceback" not in output, output
