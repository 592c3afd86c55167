"""manage.py rundemo: the web server, a Celery worker and beat, in one terminal.

The three run as child processes with the same environment, their output
interleaved with a name in front of each line. Ctrl-C (or SIGTERM) stops them all,
gently first; if one of them dies on its own the others are stopped too and the
command says which one it was, so a half-running demo never looks healthy.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from typing import IO

from django.conf import settings
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError, CommandParser

# The logins seed_demo creates, so the banner and the seed never disagree.
from agentops.shop.demo import DEMO_PASSWORD, USERS

# Slow enough that a person can watch a ticket move from queued to resolved.
DEMO_MODEL_LATENCY_MS = "400"
# A warm shutdown lets the worker finish the step it is on; runs are durable, so
# a worker killed after this is resumed at its next start, not lost.
STOP_TIMEOUT_SECONDS = 15.0
READY_TIMEOUT_SECONDS = 30.0
# What the worker logs once it consumes: the banner waits for it, so that it is
# not buried under the worker's start-up output.
WORKER_READY_MARK = " ready."


@dataclass
class Child:
    name: str
    argv: list[str]
    process: subprocess.Popen | None = None
    pump: threading.Thread | None = field(default=None, repr=False)

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None


def child_environment(environ: dict[str, str]) -> dict[str, str]:
    """The environment every child gets: ours, plus the demo's pace and unbuffered output."""
    env = dict(environ)
    env.setdefault("OFFLINE_MODEL_LATENCY_MS", DEMO_MODEL_LATENCY_MS)
    env.setdefault("DJANGO_SETTINGS_MODULE", "agentops.settings")
    # Line by line, as it happens, instead of in 8 KB bursts through the pipe.
    env["PYTHONUNBUFFERED"] = "1"
    return env


def demo_children(*, host: str, port: int, beat: bool, concurrency: int = 2) -> list[Child]:
    python = sys.executable
    manage = str(settings.BASE_DIR / "manage.py")
    celery = [python, "-m", "celery", "-A", "agentops"]
    children = [
        Child("web", [python, manage, "runserver", f"{host}:{port}", "--noreload"]),
        Child(
            "worker",
            [*celery, "worker", "--concurrency", str(concurrency), "--loglevel", "INFO"],
        ),
    ]
    if beat:
        children.append(Child("beat", [*celery, "beat", "--loglevel", "INFO"]))
    return children


def _parent_death_signal():
    """A function for the child to run before exec, so that Linux sends it SIGTERM
    if rundemo is killed outright (kill -9): a worker must never be left running
    on its own, holding the broker's messages and the port. None elsewhere.

    prctl is looked up here, in the parent: the child of a process with threads
    must not import or take locks between fork and exec.
    """
    if sys.platform != "linux":
        return None
    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None
    pr_set_pdeathsig = 1

    def set_parent_death_signal() -> None:  # pragma: no cover - runs in the child
        prctl(pr_set_pdeathsig, int(signal.SIGTERM))

    return set_parent_death_signal


class Command(BaseCommand):
    help = (
        "Run the demo: the web server, a Celery worker and beat as child processes. "
        "Ctrl-C stops them all."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--port", type=int, default=8000, help="Web server port (8000)")
        parser.add_argument("--host", default="127.0.0.1", help="Address to listen on (127.0.0.1)")
        parser.add_argument(
            "--no-beat",
            action="store_true",
            help="Do not start beat (the sweeper that re-enqueues stalled runs)",
        )

    def handle(self, *args, port: int, host: str, no_beat: bool, **options) -> None:
        # Reentrant: a signal handler runs in the main thread, possibly while it is
        # already writing, and must not wait for itself.
        self.output_lock = threading.RLock()
        if not 0 < port < 65536:
            raise CommandError(f"--port must be between 1 and 65535, got {port}.")
        self._check_port_free(host, port)
        self._collect_static()

        self.children = demo_children(host=host, port=port, beat=not no_beat)
        self.stopping = False
        self.worker_ready = threading.Event()
        env = child_environment(dict(os.environ))
        before_exec = _parent_death_signal()
        # SIGHUP too: closing the terminal must not leave the children running.
        previous = {
            sig: signal.signal(sig, self._on_signal)
            for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
        }
        try:
            for child in self.children:
                self._start(child, env, before_exec)
            if self._wait_until_ready(host, port):
                self._banner(f"http://{host}:{port}/", env)
            failed = self._supervise()
        finally:
            self._stop_all()
            for sig, handler in previous.items():
                signal.signal(sig, handler)
        if failed is not None:
            code = failed.process.returncode if failed.process else None
            raise CommandError(
                f"The {failed.name} process exited unexpectedly (exit code {code}); "
                "the others were stopped. Its output is above."
            )
        self._say("Demo stopped.")

    # --- start -------------------------------------------------------------

    def _check_port_free(self, host: str, port: int) -> None:
        with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as probe:
            try:
                probe.bind((host, port))
            except OSError as exc:
                raise CommandError(
                    f"Cannot listen on {host}:{port} ({exc.strerror}). Is another demo "
                    "running? Stop it, or pick another port with --port."
                ) from exc

    def _collect_static(self) -> None:
        # With STATIC_MANIFEST on, stylesheet URLs come from the hashed manifest,
        # which only collectstatic writes; otherwise whitenoise serves the sources.
        if "Manifest" in settings.STORAGES["staticfiles"]["BACKEND"]:
            call_command("collectstatic", interactive=False, verbosity=0)

    def _start(self, child: Child, env: dict[str, str], before_exec) -> None:
        child.process = subprocess.Popen(  # noqa: S603 - our own interpreter and fixed argv
            child.argv,
            cwd=settings.BASE_DIR,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            errors="replace",
            bufsize=1,
            # Its own process group: Ctrl-C reaches only us, and we stop the
            # children in order instead of all of them racing to shut down.
            start_new_session=True,
            preexec_fn=before_exec,  # only prctl, looked up before the fork
        )
        child.pump = threading.Thread(
            target=self._pump, args=(child.name, child.process.stdout), daemon=True
        )
        child.pump.start()
        self._say(f"Started {child.name} (pid {child.process.pid}): {' '.join(child.argv[1:])}")

    def _pump(self, name: str, stream: IO[str]) -> None:
        # Reads to the end whatever happens to our own output: a child whose pipe
        # is not drained blocks on its next log line.
        width = max(len(child.name) for child in self.children)
        for line in stream:
            if name == "worker" and WORKER_READY_MARK in line:
                self.worker_ready.set()
            self._say(f"{name:>{width}} | {line.rstrip()}")

    def _wait_until_ready(self, host: str, port: int) -> bool:
        """True once the web server accepts connections and the worker consumes (or
        they are merely slow to); False if a child died or we were told to stop."""
        deadline = time.monotonic() + READY_TIMEOUT_SECONDS
        web_ready = False
        while time.monotonic() < deadline:
            if self.stopping or any(not child.running for child in self.children):
                return False
            if not web_ready:
                try:
                    with socket.create_connection((host, port), timeout=0.5):
                        web_ready = True
                except OSError:
                    pass
            if web_ready and self.worker_ready.is_set():
                return True
            time.sleep(0.2)
        return True

    def _banner(self, url: str, env: dict[str, str]) -> None:
        width = max(len(username) for username, *_ in USERS)
        logins = "\n".join(
            f"    {username:<{width}}  {DEMO_PASSWORD}    {role}" for username, role, *_ in USERS
        )
        model = (
            f"the offline model ({env['OFFLINE_MODEL_LATENCY_MS']} ms a call)"
            if settings.AGENT_MODEL == "offline"
            else f"model {settings.AGENT_MODEL}"
        )
        beat = "on" if any(child.name == "beat" for child in self.children) else "off (--no-beat)"
        self._say(
            "\n"
            f"  agentops demo is running at {url}\n\n"
            f"  Log in as (user, password):\n{logins}\n\n"
            # Scheme and engine only: the URLs may carry passwords.
            f"  Broker {settings.CELERY_BROKER_URL.split(':', 1)[0]}, database "
            f"{settings.DATABASES['default']['ENGINE'].rsplit('.', 1)[-1]}, "
            f"{model}, beat {beat}.\n"
            "  The worker is processing the demo tickets now; watch the runs list.\n"
            "  Press Ctrl-C to stop.\n",
            style=self.style.SUCCESS,
        )

    # --- run and stop ------------------------------------------------------

    def _on_signal(self, signum: int, frame) -> None:
        if self.stopping:
            # A second Ctrl-C: the person does not want to wait for a warm shutdown.
            self._say("Stopping now.")
            for child in self.children:
                self._kill(child)
            return
        self.stopping = True
        self._say(f"\n{signal.Signals(signum).name}: stopping (Ctrl-C again to force)…")

    def _supervise(self) -> Child | None:
        """Wait for a stop signal; return the child that died first, if one did."""
        while not self.stopping:
            for child in self.children:
                if not child.running:
                    return child
            time.sleep(0.25)
        return None

    def _terminate(self, child: Child) -> None:
        # The main process only: Celery's pool processes die at once on SIGTERM,
        # while the worker's main process on SIGTERM lets them finish their task.
        if child.running:
            with contextlib.suppress(ProcessLookupError):
                os.kill(child.process.pid, signal.SIGTERM)

    def _kill(self, child: Child) -> None:
        # The whole process group, so no pool process outlives its worker.
        if child.process is not None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(child.process.pid, signal.SIGKILL)

    def _stop_all(self) -> None:
        self.stopping = True
        # Listed web first: nobody submits into a system that is going away.
        for child in self.children:
            self._terminate(child)
        deadline = time.monotonic() + STOP_TIMEOUT_SECONDS
        for child in self.children:
            if child.process is None:
                continue
            try:
                child.process.wait(timeout=max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                self._say(f"{child.name} did not stop in {STOP_TIMEOUT_SECONDS:.0f} s; killing it.")
                self._kill(child)
                child.process.wait()
        for child in self.children:
            # Whatever is left of a process group, e.g. the pool processes of a
            # worker that was killed, goes with it.
            self._kill(child)
            if child.pump is not None:
                child.pump.join(timeout=2)

    def _say(self, message: str, style=None) -> None:
        try:
            with self.output_lock:
                self.stdout.write(style(message) if style else message)
                self.stdout.flush()
        except OSError:
            # The terminal is gone (SIGHUP); stopping the children matters more.
            pass
