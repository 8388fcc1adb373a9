"""What a bench's measured phase cost, read from outside the code it measures: PostgreSQL's own
count of statements and transactions (pg_stat_statements, pg_stat_database), the CPU seconds each
service process spent (/proc), the Celery messages a worker received (its log), and py-spy's
samples of the worker processes. Used by bench/throughput.py; printed, never asserted."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from collections import Counter
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import urlsplit

from . import common

# --- PostgreSQL -------------------------------------------------------------------------------


def pg_statements_available() -> bool:
    try:
        common.execute("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
        common.scalar("SELECT count(*) FROM pg_stat_statements")
    except Exception:  # not preloaded (scripts/with-services preloads it when installed)
        from django.db import connection

        connection.rollback() if not connection.get_autocommit() else None
        return False
    return True


def pg_reset() -> dict:
    """Zero pg_stat_statements; returns this database's transaction counters to subtract later."""
    common.execute("SELECT pg_stat_statements_reset()")
    return _xacts()


def _xacts() -> dict:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SELECT xact_commit, xact_rollback FROM pg_stat_database WHERE datname = current_database()")
        commit, rollback = cursor.fetchone()
    return {"commit": commit, "rollback": rollback}


def pg_read(before: dict, *, top: int = 10) -> dict:
    """Top statements by total time, all statements and transactions since pg_reset()."""
    from django.db import connection

    # The stats collector publishes pg_stat_database at most every PGSTAT_MIN_INTERVAL.
    common.execute("SELECT pg_stat_clear_snapshot()")
    after = _xacts()
    with connection.cursor() as cursor:
        cursor.execute(
            """
            SELECT calls, total_exec_time, rows, query FROM pg_stat_statements
            WHERE dbid = (SELECT oid FROM pg_database WHERE datname = current_database())
            ORDER BY total_exec_time DESC
            """
        )
        rows = cursor.fetchall()
    statements = [r for r in rows if not _utility(r[3])]
    return {
        "top": rows[:top],
        "all": rows,
        "calls": sum(r[0] for r in rows),
        "statements": sum(r[0] for r in statements),
        "total_ms": sum(r[1] for r in rows),
        "begins": sum(r[0] for r in rows if r[3].strip().upper().startswith("BEGIN")),
        "transactions": after["commit"] - before["commit"] + after["rollback"] - before["rollback"],
    }


def _utility(query: str) -> bool:
    return query.strip().upper().split(" ", 1)[0] in {"BEGIN", "COMMIT", "ROLLBACK", "SAVEPOINT", "RELEASE"}


def write_pg(path: Path, pg: dict, *, per: int) -> None:
    """Every statement of the phase, for the notes: calls, per renewal, total ms, query."""
    with open(path, "w") as out:
        for calls, total, _rows, query in pg["all"]:
            text = re.sub(r"\s+", " ", query)[:400]
            out.write(f"{calls:>7} {calls / per:6.2f}/r {total:10.1f} ms  {text}\n")


def print_pg(label: str, pg: dict, *, per: int) -> None:
    print(
        f"   {label} PostgreSQL: {pg['calls']:,} calls ({pg['statements']:,} statements + BEGIN/COMMIT/SAVEPOINT), "
        f"{pg['total_ms']:,.0f} ms executing; per renewal: {pg['calls'] / per:.1f} round trips, "
        f"{pg['statements'] / per:.1f} statements, {pg['transactions'] / per:.1f} transactions "
        f"(pg_stat_database, autocommit statements and the bench's own polling included), "
        f"{pg['begins'] / per:.1f} BEGIN"
    )
    print(f"   {label} top statements by total time (pg_stat_statements): calls, total ms, per renewal, query")
    for calls, total, _rows, query in pg["top"]:
        text = re.sub(r"\s+", " ", query)[:150]
        print(f"      {calls:>7,} {total:>9,.1f} ms {calls / per:>5.1f}/r  {text}")


# --- CPU of the processes involved ------------------------------------------------------------


def _ticks(pid: int) -> int:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0
    # utime + stime + cutime + cstime: a child that exits during the phase (a PostgreSQL backend,
    # a plain client) is counted in its parent once reaped.
    return int(fields[11]) + int(fields[12]) + int(fields[13]) + int(fields[14])


def _children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        if ppid == pid:
            found.append(int(entry.name))
    return found


def localstripe_pid() -> int | None:
    """The localstripe serving STRIPE_API_BASE (scripts/with-services started it)."""
    from django.conf import settings

    port = str(urlsplit(settings.STRIPE_API_BASE).port)
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmd = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if any(b"localstripe" in part for part in cmd) and port.encode() in cmd:
            return int(entry.name)
    return None


def postmaster_pid() -> int | None:
    services = os.environ.get("ESIMSITE_SERVICES_DIR")
    try:
        return int(Path(services, "pgdata", "postmaster.pid").read_text().split()[0]) if services else None
    except (OSError, ValueError, IndexError):
        return None


class CpuMeter:
    """CPU seconds of localstripe, PostgreSQL (every backend), the worker (its pool included) and
    this process over a phase: which of them was busy, in cores."""

    def __init__(self, worker_pid: int | None):
        self.groups = {
            "localstripe": [p for p in [localstripe_pid()] if p],
            "postgres": [p for p in [postmaster_pid()] if p],
            "worker": [worker_pid] if worker_pid else [],
            "bench": [os.getpid()],
        }

    def _sample(self) -> dict[str, int]:
        # Children are re-read each time: PostgreSQL forks a backend per connection, the pool restarts.
        out = {}
        for name, roots in self.groups.items():
            pids = set(roots)
            for root in roots:
                pids.update(_children(root))
            if name == "bench":  # its forked plain clients, not the worker it started
                pids -= {p for w in self.groups["worker"] for p in [w, *_children(w)]}
            out[name] = sum(_ticks(p) for p in pids)
        return out

    def __enter__(self):
        self.start, self.t0 = self._sample(), os.times().elapsed
        return self

    def __exit__(self, *exc):
        self.end, self.t1 = self._sample(), os.times().elapsed

    def cores(self) -> dict[str, float]:
        hz = os.sysconf("SC_CLK_TCK")
        wall = max(self.t1 - self.t0, 1e-9)
        return {k: (self.end[k] - self.start[k]) / hz / wall for k in self.start}

    def line(self) -> str:
        return ", ".join(f"{name} {share:.2f}" for name, share in self.cores().items())


# --- Celery messages ---------------------------------------------------------------------------


def tasks_received(log_path: Path) -> Counter:
    """Celery messages the worker received, by task name (its INFO log: `Task <name>[<id>] received`)."""
    found = Counter()
    for match in re.finditer(r"Task ([\w.]+)\[[^\]]+\] received", log_path.read_text(errors="replace")):
        found[match.group(1)] += 1
    return found


# --- py-spy -----------------------------------------------------------------------------------


def py_spy() -> str | None:
    candidate = Path(sys.executable).parent / "py-spy"
    return str(candidate) if candidate.exists() else shutil.which("py-spy")


@contextmanager
def sampled(pid: int | None, out: Path):
    """py-spy record --subprocesses --format raw of `pid` and its children while the block runs."""
    tool = py_spy()
    if pid is None or tool is None:
        yield None
        return
    process = subprocess.Popen(
        [tool, "record", "--subprocesses", "--format", "raw", "--rate", "100", "-o", str(out), "--pid", str(pid)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        yield out
    finally:
        process.send_signal(2)  # SIGINT: py-spy writes its file and exits
        try:
            process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            process.kill()


_FRAME = re.compile(r"^(?P<func>.+?) \((?P<file>[^:()]+)(?::\d+)?\)$")


def _frame_name(frame: str) -> str:
    match = _FRAME.match(frame.strip())
    if not match:
        return frame.strip()
    path = match.group("file")
    for marker in ("site-packages/", "lib/python3"):
        if marker in path:
            path = path.split(marker, 1)[1]
            break
    return f"{match.group('func')} ({path})"


def summarise(raw: Path, *, top: int = 15) -> dict:
    """Self and inclusive sample shares per function from py-spy's collapsed stacks."""
    self_counts: Counter = Counter()
    incl_counts: Counter = Counter()
    total = 0
    if not raw.exists():
        return {"total": 0, "self": [], "inclusive": []}
    for line in raw.read_text(errors="replace").splitlines():
        stack, _, count = line.rpartition(" ")
        if not count.isdigit():
            continue
        n = int(count)
        frames = [_frame_name(f) for f in stack.split(";") if f and not f.startswith("process ")]
        if not frames:
            continue
        total += n
        self_counts[frames[-1]] += n
        for name in set(frames):
            incl_counts[name] += n
    return {
        "total": total,
        "self": [(name, n / total) for name, n in self_counts.most_common(top)] if total else [],
        "inclusive": [(name, n / total) for name, n in incl_counts.most_common(top * 3)] if total else [],
    }


def print_py_spy(label: str, summary: dict, *, interesting=("renewals/", "payments/", "accounts/")) -> None:
    if not summary["total"]:
        print(f"   {label} py-spy: no samples (py-spy missing or not permitted)")
        return
    print(f"   {label} py-spy (worker processes, {summary['total']:,} samples of busy threads): top self time")
    for name, share in summary["self"]:
        print(f"      {share:6.1%}  {name}")
    ours = [(n, s) for n, s in summary["inclusive"] if any(mark in n for mark in interesting)][:12]
    print(f"   {label} py-spy inclusive time, our functions")
    for name, share in ours:
        print(f"      {share:6.1%}  {name}")
