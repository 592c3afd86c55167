"""manage.py rundemo: starts web, worker and beat; stops them all, together."""

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from django.conf import settings
from django.core.management import CommandError, call_command

from agentops.management.commands.rundemo import child_environment, demo_children

BASE_DIR = Path(settings.BASE_DIR)


def test_it_slows_the_offline_model_for_watching_unless_told_otherwise():
    assert child_environment({})["OFFLINE_MODEL_LATENCY_MS"] == "400"
    assert child_environment({"OFFLINE_MODEL_LATENCY_MS": "0"})["OFFLINE_MODEL_LATENCY_MS"] == "0"


def test_it_passes_its_own_environment_to_every_child():
    env = child_environment({"DATABASE_URL": "postgres://db/x", "CELERY_BROKER_URL": "redis://r"})

    assert env["DATABASE_URL"] == "postgres://db/x"
    assert env["CELERY_BROKER_URL"] == "redis://r"
    assert env["PYTHONUNBUFFERED"] == "1"


def test_it_runs_web_worker_and_beat_and_leaves_beat_out_when_asked():
    children = demo_children(host="127.0.0.1", port=8123, beat=True)
    without_beat = demo_children(host="127.0.0.1", port=8123, beat=False)

    assert [child.name for child in children] == ["web", "worker", "beat"]
    assert [child.name for child in without_beat] == ["web", "worker"]
    web, worker, beat = (child.argv for child in children)
    assert web[-3:] == ["runserver", "127.0.0.1:8123", "--noreload"]
    assert worker[1:] == [
        "-m", "celery", "-A", "agentops", "worker", "--concurrency", "2", "--loglevel", "INFO"
    ]  # fmt: skip
    assert beat[1:6] == ["-m", "celery", "-A", "agentops", "beat"]
    # The children use this interpreter, so the demo runs in the project's .venv.
    assert {argv[0] for argv in (web, worker, beat)} == {sys.executable}


def test_it_refuses_a_port_that_is_taken():
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]

        with pytest.raises(CommandError, match=f"Cannot listen on 127.0.0.1:{port}"):
            call_command("rundemo", "--port", str(port))


# --- the real thing: child processes --------------------------------------------


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture(scope="module")
def demo_env(tmp_path_factory) -> dict[str, str]:
    """An environment for a demo of its own: a fresh SQLite and broker, migrated.

    The backends from the outside (DATABASE_URL, CELERY_BROKER_URL) are left out on
    purpose: this tests how rundemo runs its children, not the backends, and must
    not migrate or consume from a database or queue that someone else uses.
    """
    var_dir = tmp_path_factory.mktemp("demo-var")
    env = {
        key: value
        for key, value in os.environ.items()
        if key not in {"DATABASE_URL", "CELERY_BROKER_URL"}
    }
    env |= {"AGENTOPS_VAR_DIR": str(var_dir), "DJANGO_SETTINGS_MODULE": "agentops.settings"}
    subprocess.run(  # noqa: S603
        [sys.executable, "manage.py", "migrate", "--no-input", "-v0"],
        cwd=BASE_DIR,
        env=env,
        check=True,
        timeout=120,
    )
    return env


class Demo:
    def __init__(self, env: dict[str, str], *args: str) -> None:
        self.port = _free_port()
        self.log = open(Path(env["AGENTOPS_VAR_DIR"]) / f"rundemo-{self.port}.log", "w+")  # noqa: SIM115
        self.process = subprocess.Popen(  # noqa: S603
            [sys.executable, "manage.py", "rundemo", "--port", str(self.port), *args],
            cwd=BASE_DIR,
            env=env,
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )

    def output(self) -> str:
        return Path(self.log.name).read_text()

    def wait_for(self, text: str, timeout: float = 90) -> None:
        deadline = time.monotonic() + timeout
        while text not in self.output():
            assert self.process.poll() is None, self.output()
            assert time.monotonic() < deadline, f"no {text!r} in:\n{self.output()}"
            time.sleep(0.2)

    def child_pids(self) -> dict[str, int]:
        return {
            name: int(pid)
            for name, pid in re.findall(r"Started (\w+) \(pid (\d+)\)", self.output())
        }

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        for pid in self.child_pids().values():
            if _alive(pid):
                os.killpg(pid, signal.SIGKILL)
        self.log.close()


def _alive(pid: int) -> bool:
    # /proc rather than kill(pid, 0): the children are rundemo's, and a zombie
    # that rundemo failed to reap would still answer kill(0).
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, IndexError):
        return False
    return state != "Z"


@pytest.fixture
def demo(demo_env):
    started: list[Demo] = []

    def start(*args: str) -> Demo:
        started.append(Demo(demo_env, *args))
        return started[-1]

    yield start
    for each in started:
        each.stop()


@pytest.mark.worker
@pytest.mark.skipif(sys.platform != "linux", reason="checks processes through /proc")
def test_it_serves_the_site_and_stops_every_child_on_sigterm(demo):
    run = demo()
    run.wait_for("agentops demo is running at")

    assert set(run.child_pids()) == {"web", "worker", "beat"}
    assert "lead" in run.output() and "agentops-demo" in run.output()
    with pytest.raises(urllib.error.HTTPError) as answer:
        urllib.request.urlopen(f"http://127.0.0.1:{run.port}/api/runs/x", timeout=10)  # noqa: S310
    assert answer.value.code == 401
    assert "error" in json.loads(answer.value.read())

    run.process.send_signal(signal.SIGTERM)

    assert run.process.wait(timeout=60) == 0
    assert "Demo stopped." in run.output()
    assert not [name for name, pid in run.child_pids().items() if _alive(pid)]


@pytest.mark.worker
@pytest.mark.skipif(sys.platform != "linux", reason="checks processes through /proc")
def test_it_stops_everything_and_says_which_child_died_when_one_does(demo):
    run = demo("--no-beat")
    run.wait_for("agentops demo is running at")
    assert set(run.child_pids()) == {"web", "worker"}

    os.kill(run.child_pids()["worker"], signal.SIGKILL)

    assert run.process.wait(timeout=60) == 1
    assert "The worker process exited unexpectedly" in run.output()
    assert not _alive(run.child_pids()["web"])
