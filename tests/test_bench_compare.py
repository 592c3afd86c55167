"""bench_compare: two trees measured alternated, and what it refuses to compare."""

import subprocess

import pytest
from django.core.management import CommandError, call_command
from django.db import connection

from agentops.bench.compare import (
    CompareError,
    Tree,
    alternated,
    compare,
    migrations_differ,
    tree_of,
)
from agentops.bench.runner import ROOT


def _tree(root, *, migration: str = "initial") -> Tree:
    (root / "agentops" / "runtime").mkdir(parents=True)
    (root / "agentops" / "runtime" / "loop.py").write_text("")
    (root / "agentops" / "migrations").mkdir()
    (root / "agentops" / "migrations" / "0001_initial.py").write_text(f"# {migration}\n")
    return Tree(str(root), root)


def _git(*args, cwd):
    subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True)  # noqa: S603, S607


def test_the_two_trees_take_turns_so_neither_is_always_first():
    assert alternated(1) == ["base", "candidate"]
    assert alternated(2) == ["base", "candidate", "candidate", "base"]
    assert alternated(3) == ["base", "candidate", "candidate", "base", "base", "candidate"]


def test_trees_whose_migrations_differ_are_refused(tmp_path):
    one, other = _tree(tmp_path / "one"), _tree(tmp_path / "other", migration="changed")
    # A checkout of another commit under var/ is not this tree's migration.
    _tree(tmp_path / "one" / "var" / "bench-compare" / "abc")

    assert migrations_differ(one.path, one.path) == []
    assert migrations_differ(one.path, other.path) == ["agentops/migrations/0001_initial.py"]
    with pytest.raises(CompareError, match="migrations differ.*0001_initial"):
        compare(one, other, pairs=1, tickets=1, warmup=0, out=print, run=lambda *a, **k: {})


def test_a_commit_is_checked_out_for_the_comparison_and_a_bad_name_is_said(tmp_path):
    repo = tmp_path / "repo"
    _tree(repo)
    _git("init", "-q", cwd=repo)
    _git("add", ".", cwd=repo)
    _git("-c", "user.name=t", "-c", "user.email=t@example.com", "commit", "-qm", "one", cwd=repo)
    checkouts = tmp_path / "checkouts"

    with tree_of("HEAD", repo=repo, checkouts=checkouts) as tree:
        assert tree.path.parent == checkouts and tree.label.startswith("HEAD (")
        assert (tree.path / "agentops" / "runtime" / "loop.py").is_file()
        # The same commit again (base and candidate alike): the checkout is shared...
        with tree_of("HEAD", repo=repo, checkouts=checkouts) as again:
            assert again.path == tree.path
        assert tree.path.is_dir()  # ...and left to the block that made it
    assert not tree.path.exists()
    with pytest.raises(CompareError, match="no-such-commit: neither a directory nor a commit"):
        tree_of("no-such-commit", repo=repo, checkouts=checkouts).__enter__()
    with pytest.raises(CompareError, match="does not hold agentops"):
        tree_of(str(tmp_path), repo=repo, checkouts=checkouts).__enter__()


def test_it_prints_each_run_then_medians_ranges_and_the_ratio(tmp_path):
    base, candidate = _tree(tmp_path / "base"), _tree(tmp_path / "candidate")
    figures = {
        "base": iter([20.0, 22.0, 21.0]),
        "candidate": iter([15.0, 17.0, 16.0]),
    }
    counts = {"round_trips": 14, "statements": 44, "write_transactions": 10}

    def run(tree, *, tickets, warmup):
        python = next(figures["base" if tree is base else "candidate"])
        return {
            "python_ms": python,
            "backend_ms": None,  # the server on another host
            "wall_ms": 2 * python,
            "wal_bytes": 1000.0,
            "wal_bytes_without_full_pages": 900.0,
            **counts,
        }

    printed = []
    summary = compare(base, candidate, pairs=3, tickets=5, warmup=1, out=printed.append, run=run)
    lines = summary.lines()

    assert [line.split(":")[0].strip() for line in printed] == [
        "base 1",
        "candidate 1",
        "candidate 2",
        "base 2",
        "base 3",
        "candidate 3",
    ]
    python = next(line for line in lines if line.startswith("Python CPU, ms"))
    # By pair: 15/20, 17/22, 16/21.
    assert python.split() == [
        "Python",
        "CPU,",
        "ms",
        "21.00",
        "(20.00-22.00)",
        "16.00",
        "(15.00-17.00)",
        "0.762",
        "(0.750-0.773)",
    ]
    backend = next(line for line in lines if line.startswith("PostgreSQL backend CPU"))
    assert backend.split()[-3:] == ["n/a", "n/a", "n/a"]
    assert lines[-1].endswith(
        "queries sent 14 / 14, statements 44 / 44, write transactions 10 / 10"
    )


@pytest.mark.django_db
def test_it_refuses_anything_but_postgresql():
    if connection.vendor == "postgresql":
        pytest.skip("runs on the embedded defaults only; the PostgreSQL pass measures")
    with pytest.raises(CommandError, match="PostgreSQL"):
        call_command("bench_compare", base=str(ROOT), pairs=1, tickets=1)


@pytest.mark.django_db(transaction=True)
def test_it_measures_this_checkout_against_itself(capsys):
    if connection.vendor != "postgresql":
        pytest.skip("measures on PostgreSQL (the CI's second pass)")
    call_command("bench_compare", base=str(ROOT), pairs=1, tickets=3, warmup=1)

    out = capsys.readouterr().out
    runs = [line for line in out.splitlines() if line.startswith(("  base 1:", "  candidate 1:"))]
    assert len(runs) == 2, out
    for run in runs:
        assert "Python CPU" in run and "wall" in run and "WAL" in run
        python = float(run.split("Python CPU ")[1].split(" ms")[0])
        assert python > 0
    table = out.split("per ticket, median (min-max)")[1]
    for figure in ("Python CPU, ms", "PostgreSQL backend CPU, ms", "wall, ms", "WAL, B"):
        assert figure in table
    # One ticket's queries, counted by the code under test as `make bench` counts them.
    counted = out.strip().splitlines()[-1]
    assert counted.startswith("one ticket, counted in-process (base / candidate): queries sent")
    sent = counted.split("queries sent ")[1].split(",")[0].split(" / ")
    assert sent[0] == sent[1] and int(sent[0]) > 0
