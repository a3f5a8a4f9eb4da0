"""Run Django's own ``tests/tasks/`` against djq's backend (a CI step of .ci/run).

    python tests/django_upstream/run.py [--workdir DIR]

1. Downloads Django's sdist from the package index with pip (the installed Django's
   version; on Django 5.2, whose sdist has no ``tests/tasks/``, the Django 6.0 sdist, whose
   tests the ``django-tasks`` backport follows) and extracts ``tests/tasks/``.
2. Points those tests at djq: the backend paths they name are rewritten to the stand-ins
   in ``backends.py`` (on Django 5.2 also ``django.tasks`` -> ``django_tasks``), see
   ``REWRITES``.
3. Migrates a SQLite file, starts ONE real ``djq_worker`` on it, and runs the tests twice:
   the worker pass (every file; ``ImmediateBackend`` = enqueue and wait for the worker) and
   the eager pass (``excluded.EAGER_TESTS``, under ``DJQ_TASK_ALWAYS_EAGER``). The tests
   listed in ``excluded.py`` are left out, each with its reason; a listed test that no
   longer exists fails the run, so the list cannot go stale.

Exits 1 on any failure or error. Prints ``N passed, N failed`` last.
"""
from __future__ import annotations

import argparse
import os
import re
import signal
import subprocess
import sys
import tarfile
import time
import unittest
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent
MODULES = ["test_tasks", "test_custom_backend", "test_dummy_backend", "test_immediate_backend"]
REWRITES = [
    (r"from django\.tasks\.backends\.immediate import ImmediateBackend",
     "from tests.django_upstream.backends import Immediate as ImmediateBackend"),
    (r"from django\.tasks\.backends\.dummy import DummyBackend",
     "from tests.django_upstream.backends import Dummy as DummyBackend"),
    (r"django\.tasks\.backends\.immediate\.ImmediateBackend", "tests.django_upstream.backends.Immediate"),
    (r"django\.tasks\.backends\.dummy\.DummyBackend", "tests.django_upstream.backends.Dummy"),
]
#: Django 5.2: the same API from the backport, under its own names
BACKPORT_REWRITES = [
    (r"\bdjango\.tasks\b", "django_tasks"),
    (r"\bInvalidTask\b", "InvalidTaskError"),
    (r"\bInvalidTaskBackend\b", "InvalidTaskBackendError"),
    (r"does not support async Tasks\.", "does not support async tasks."),  # the backport's wording
]


def django_version() -> tuple[int, ...]:
    out = subprocess.run([sys.executable, "-c", "import django; print(django.__version__)"],
                         check=True, capture_output=True, text=True).stdout.strip()
    return tuple(int(p) for p in re.findall(r"\d+", out)[:3])


def fetch_tests(workdir: Path, version: tuple[int, ...]) -> Path:
    """``workdir/tasks``: Django's tests/tasks/ from the sdist, rewritten for djq."""
    spec = "django==" + ".".join(map(str, version)) if version >= (6, 0) else "django>=6.0,<6.1"
    downloads = workdir / "sdist"
    downloads.mkdir(parents=True, exist_ok=True)
    subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--no-binary", ":all:",
                    "--ignore-requires-python", "-d", str(downloads), spec], check=True, timeout=300)
    [sdist] = sorted(downloads.glob("[dD]jango-6*.tar.gz"), key=lambda p: p.stat().st_mtime)[-1:]
    target = workdir / "tasks"
    target.mkdir(parents=True, exist_ok=True)
    rewrites = REWRITES + (BACKPORT_REWRITES if version < (6, 0) else [])
    with tarfile.open(sdist) as archive:
        members = [m for m in archive.getmembers() if re.match(r"[^/]+/tests/tasks/[^/]+\.py$", m.name)]
        if not members:
            raise SystemExit(f"{sdist.name} has no tests/tasks/")
        for member in members:
            text = archive.extractfile(member).read().decode()  # type: ignore[union-attr]
            for pattern, replacement in rewrites:
                text = re.sub(pattern, replacement, text)
            (target / Path(member.name).name).write_text(text)
    print(f"django upstream tests: tests/tasks/ of {sdist.name} ({len(members)} files)", flush=True)
    return target


def start_worker(env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with open(log, "wb") as out:
        worker = subprocess.Popen([sys.executable, "-m", "django", "djq_worker", "-P", "threads", "-c", "4",
                                   "-l", "INFO", "-n", "upstream@test"],
                                  cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    deadline = time.monotonic() + 60
    while " ready" not in log.read_text(errors="replace"):
        if worker.poll() is not None or time.monotonic() > deadline:
            stop_worker(worker)
            raise SystemExit(f"the worker did not start:\n{log.read_text(errors='replace')}")
        time.sleep(0.05)
    return worker


def stop_worker(worker: subprocess.Popen[bytes]) -> None:
    if worker.poll() is None:
        worker.send_signal(signal.SIGTERM)
        try:
            worker.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(worker.pid, signal.SIGKILL)
            worker.wait(timeout=10)


def suite_for(modules: list[str], excluded: dict[str, str], seen: set[str]) -> unittest.TestSuite:
    def flatten(suite: unittest.TestSuite) -> list[unittest.TestCase]:
        return [t for s in suite for t in (flatten(s) if isinstance(s, unittest.TestSuite) else [s])]

    kept = unittest.TestSuite()
    for test in flatten(unittest.defaultTestLoader.loadTestsFromNames([f"tasks.{m}" for m in modules])):
        name = test.id().removeprefix("tasks.")
        if name in excluded:
            seen.add(name)
        else:
            kept.addTest(test)
    return kept


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", type=Path,
                        default=Path(os.environ.get("DJQ_TEST_TMP", "/tmp")) / "django-upstream")
    workdir = parser.parse_args().workdir.resolve()
    version = django_version()
    fetch_tests(workdir, version)
    db = workdir / "upstream.sqlite3"
    for leftover in workdir.glob("upstream.sqlite3*"):
        leftover.unlink()
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "tests.django_upstream.settings", "DJQ_UPSTREAM_DB": str(db),
           "PYTHONPATH": os.pathsep.join([str(ROOT), str(workdir)])}
    os.environ.update(env)
    # The stand-ins read djq's result rows where Django's in-memory backends read nothing,
    # and some async tests call the synchronous refresh()/get_result() directly.
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
    sys.path[:0] = [str(ROOT), str(workdir)]

    import django
    from django.core.management import call_command
    from django.test import SimpleTestCase
    from django.test.utils import setup_test_environment

    django.setup()
    call_command("migrate", verbosity=0)
    setup_test_environment()
    # Django's tests are SimpleTestCases (its dummy and immediate backends touch no
    # database); djq's backend stores a row per task, in this throwaway SQLite file.
    SimpleTestCase.databases = {"default"}  # type: ignore[assignment]

    from tests.django_upstream import backends
    from tests.django_upstream.excluded import EAGER_PASS, EAGER_TESTS, WORKER_PASS, for_this_python

    WORKER_PASS.update(for_this_python())

    worker = start_worker(env, workdir / "worker.log")
    seen: set[str] = set()
    runner = unittest.TextTestRunner(verbosity=1, stream=sys.stdout)
    try:
        print("--- worker pass: one djq_worker runs every task ---", flush=True)
        first = runner.run(suite_for(MODULES, WORKER_PASS, seen))
        backends.MODE = "eager"
        print("--- eager pass: the immediate backend's tests under DJQ_TASK_ALWAYS_EAGER ---", flush=True)
        second = runner.run(suite_for(EAGER_TESTS, EAGER_PASS, seen))
    finally:
        stop_worker(worker)
    stale = sorted((set(WORKER_PASS) | set(EAGER_PASS)) - seen)
    for name in stale:
        print(f"excluded.py lists {name}, which the upstream tests no longer have", flush=True)
    failed = sum(len(r.failures) + len(r.errors) for r in (first, second))
    passed = sum(r.testsRun for r in (first, second)) - failed
    if failed:
        print(f"worker log: {workdir / 'worker.log'}")
    print(f"{passed} passed, {failed} failed")
    return 1 if failed or stale else 0


if __name__ == "__main__":
    sys.exit(main())
