"""Two trees of agentops measured against each other, alternated: is a change faster?

`make bench` compares agentops with the floor; between two commits its figures
move more with the machine than with the code (the floor by up to a quarter from
round to round). A change of a few percent shows only when the two are measured
in turn, in the same minutes, on the same database. This runs each tree's tickets
in one process of its own (alone.py: CPU, its backend's CPU, wall time, WAL and
the queries of one ticket), in pairs: base then candidate, then candidate then
base, and so on. It prints every run, the median of each figure with its range,
and the ratio candidate / base within each pair (the two runs of a pair are
measured one right after the other, so a drift of the machine between pairs
cancels).

A tree is a directory holding agentops (the working tree, by default the
candidate) or a git commit, checked out under var/bench-compare/ while the
comparison runs. Both run with this checkout's virtualenv, on one database
migrated for both: two trees whose migrations differ cannot share it, and are
refused.
"""

from __future__ import annotations

import hashlib
import json
import os
import statistics
import subprocess
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from agentops.bench.runner import ROOT, WORKLOAD_ENV, database_url

ALONE = Path(__file__).with_name("alone.py")
CHECKOUTS = ROOT / "var" / "bench-compare"
# Per-ticket figures, in print order: (key, name, unit, digits).
FIGURES = (
    ("python_ms", "Python CPU", "ms", 2),
    ("backend_ms", "PostgreSQL backend CPU", "ms", 2),
    ("wall_ms", "wall", "ms", 2),
    ("wal_bytes", "WAL", "B", 0),
    ("wal_bytes_without_full_pages", "WAL without full-page images", "B", 0),
)
COUNTS = (
    ("round_trips", "queries sent"),
    ("statements", "statements"),
    ("write_transactions", "write transactions"),
)


class CompareError(Exception):
    """What cannot be compared, said plainly."""


@dataclass(frozen=True)
class Tree:
    label: str
    path: Path


def _output(argv: list[str], *, cwd: Path, failed: str, env: dict | None = None) -> str:
    """The command's standard output; if it fails, CompareError: `failed` and what it said."""
    # Our own argv (git, or this interpreter and alone.py), never a shell's.
    done = subprocess.run(  # noqa: S603
        argv, cwd=cwd, env=env, capture_output=True, text=True, check=False
    )
    if done.returncode != 0:
        raise CompareError(f"{failed}: {(done.stderr or done.stdout).strip()[-2000:]}")
    return done.stdout.strip()


def _git(*args: str, repo: Path) -> str:
    return _output(["git", *args], cwd=repo, failed=f"git {' '.join(args)}")  # noqa: S607


@contextmanager
def tree_of(spec: str, *, repo: Path = ROOT, checkouts: Path = CHECKOUTS) -> Iterator[Tree]:
    """The tree `spec` names: a directory holding agentops, or a commit of `repo`,
    checked out under `checkouts` (a detached git worktree) for as long as the block
    lasts. A checkout that was already there is used and left."""
    path = Path(spec)
    if path.is_dir():
        if not (path / "agentops" / "runtime" / "loop.py").is_file():
            raise CompareError(f"{spec} does not hold agentops (no agentops/runtime/loop.py)")
        yield Tree(f"{path.resolve()}", path.resolve())
        return
    try:
        commit = _git("rev-parse", "--verify", "--quiet", f"{spec}^{{commit}}", repo=repo)
    except CompareError:
        raise CompareError(f"{spec}: neither a directory nor a commit of {repo}") from None
    checkout = checkouts / commit[:12]
    created = not (checkout / "agentops").is_dir()
    if created:
        checkouts.mkdir(parents=True, exist_ok=True)
        _git("worktree", "add", "--detach", str(checkout), commit, repo=repo)
    try:
        yield Tree(f"{spec} ({commit[:8]})", checkout)
    finally:
        if created:
            _git("worktree", "remove", "--force", str(checkout), repo=repo)


def _migrations(tree: Path) -> dict[str, str]:
    """Each migration file of the tree (not of its virtualenv or of checkouts under
    var/), by its path in the tree: its contents' hash."""
    found = {}
    for path in sorted(tree.glob("**/migrations/*.py")):
        name = path.relative_to(tree)
        if name.parts[0] not in (".venv", "var"):
            found[str(name)] = hashlib.sha256(path.read_bytes()).hexdigest()
    return found


def migrations_differ(one: Path, other: Path) -> list[str]:
    """The migration files that are not the same in both trees (added, removed, changed)."""
    a, b = _migrations(one), _migrations(other)
    return sorted(name for name in a.keys() | b.keys() if a.get(name) != b.get(name))


def measure(tree: Tree, *, tickets: int, warmup: int) -> dict:
    """One run of alone.py in `tree`: its figures per ticket."""
    env = {
        **os.environ,
        **WORKLOAD_ENV,
        "DATABASE_URL": database_url(),
        "DJANGO_SETTINGS_MODULE": "agentops.settings",
        "PYTHONPATH": str(tree.path),
    }
    argv = [sys.executable, "-P", str(ALONE), str(tickets), str(warmup)]
    printed = _output(argv, cwd=tree.path, env=env, failed=tree.label)
    return json.loads(printed.splitlines()[-1])


def alternated(pairs: int) -> list[str]:
    """The order of the runs: base then candidate, then candidate then base, and so on,
    so that neither side is always measured first (the machine drifts)."""
    order: list[str] = []
    for pair in range(pairs):
        order += ["base", "candidate"] if pair % 2 == 0 else ["candidate", "base"]
    return order


def _format(value: float | None, digits: int) -> str:
    return "n/a" if value is None else f"{value:,.{digits}f}"


@dataclass
class Summary:
    # Each pair's two runs, measured one right after the other: (base, candidate).
    pairs: list[tuple[dict, dict]]

    def _values(self, side: int, key: str) -> list[float]:
        return [pair[side][key] for pair in self.pairs if pair[side][key] is not None]

    def _ratios(self, key: str) -> list[float]:
        """Candidate / base within each pair: the machine's drift between pairs cancels."""
        return [
            candidate[key] / base[key]
            for base, candidate in self.pairs
            if base[key] and candidate[key] is not None
        ]

    def lines(self) -> list[str]:
        out = [
            f"{'per ticket, median (min-max)':<36}{'base':>24}{'candidate':>24}"
            f"{'candidate / base, by pair':>30}"
        ]
        for key, name, unit, digits in FIGURES:
            cells = [
                _spread(self._values(0, key), digits),
                _spread(self._values(1, key), digits),
                _spread(self._ratios(key), 3),
            ]
            out.append(f"{f'{name}, {unit}':<36}{cells[0]:>24}{cells[1]:>24}{cells[2]:>30}")
        base, candidate = self.pairs[0]
        counted = ", ".join(f"{label} {base[key]} / {candidate[key]}" for key, label in COUNTS)
        out.append(f"one ticket, counted in-process (base / candidate): {counted}")
        return out


def _spread(values: list[float], digits: int) -> str:
    if not values:
        return "n/a"
    low, middle, high = min(values), statistics.median(values), max(values)
    return f"{_format(middle, digits)} ({_format(low, digits)}-{_format(high, digits)})"


def compare(
    base: Tree,
    candidate: Tree,
    *,
    pairs: int,
    tickets: int,
    warmup: int,
    out: Callable[[str], None],
    run: Callable[..., dict] = measure,
) -> Summary:
    """Measure the two trees alternated, printing each run as it ends."""
    differ = migrations_differ(base.path, candidate.path)
    if differ:
        raise CompareError(
            "the two trees' migrations differ, so they cannot share one database: "
            + ", ".join(differ[:5])
            + (" ..." if len(differ) > 5 else "")
        )
    trees = {"base": base, "candidate": candidate}
    measured: list[dict[str, dict]] = []
    for index, side in enumerate(alternated(pairs)):
        if index % 2 == 0:
            measured.append({})
        figures = measured[-1][side] = run(trees[side], tickets=tickets, warmup=warmup)
        shown = ", ".join(
            f"{name} {_format(figures[key], digits)} {unit}" for key, name, unit, digits in FIGURES
        )
        out(f"  {side} {len(measured)}: {shown}")
    return Summary([(pair["base"], pair["candidate"]) for pair in measured])
