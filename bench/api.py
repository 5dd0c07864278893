"""API benchmark: what the request path costs next to yardsticks measured in the same run.

For each database, one table of ratios, each next to the bound issue 15 sets for it:

- in-process (service layer, no HTTP): a port create, and one port of a bulk create, against one
  ``bench.fill`` allocation (driver + core row + commit);
- over HTTP (``pipam serve``): ``GET`` of a network, a single port create and one port of a bulk
  create against ``GET /`` (the version document: HTTP alone); ``GET /v2.0/ports?limit=1000`` against
  ``GET`` of one port, and against the same page read by the bare driver and encoded by orjson in the
  benchmark's own process (its floor: reported, with no bound);
- throughput: ports/s of concurrent clients against raw single-row insert+commit/s of as many
  concurrent connections on the same database; beside it, the CPU each run took of the whole machine
  (database server included) per port and per row, and how busy it kept the cores: when both keep
  every core busy, the two rates stand in the inverse ratio of their CPU per item. Two more throughput
  figures, with no bound: ports/s of four times the clients against ports/s of the clients (a burst
  wider than a worker's connections must not cost a new connection per request), and on PostgreSQL the
  throughput ratio again with every commit of both runs held ``--commit-wait-ms``, as a synchronous
  standby holds it (a deferred trigger sleeps in it): where the commit's wait, not the CPU, sets the
  pace, the ratio says whether concurrent requests' commits overlap in Pipam;
- memory: the server's RSS after ``--rss-ports`` port creates against its RSS after ``--rss-first`` (1,000).

Latencies are means of sequential requests on one kept-alive connection, the kinds interleaved in
rounds so that the machine's load falls on all of them alike; the p50 and p99 of ``GET /``, ``GET``
network and port create are printed beside them, and beside each ratio of two latencies the lowest and
highest of its rounds' ratios: the verdict is the run's mean, the spread says how firmly. While the
client times the server, what it built before (imports, the in-process part) is kept out of its own
garbage collector (``client_heap_frozen``), whose passes over it otherwise landed in the timed requests.
Exit code 3 when a bound is missed (the JSON and the table are written first), 1 on an error.

    python -m bench.api                                   # SQLite (1 worker) and PostgreSQL (2 workers)
    python -m bench.api --dbs sqlite --rss-ports 20000 --json api.json
"""

from __future__ import annotations

import contextlib
import gc
import os
import statistics
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import orjson
import typer
from sqlalchemy import Column, Integer, MetaData, String, Table, event, insert

from bench.common import console, fresh_database, machine, summary, table, write_json
from bench.fill import allocate_one
from pipam.db.engine import make_engine
from pipam.db.models import Subnet
from pipam.service.database import Database
from pipam.testing import local
from pipam.testing.server import Server

MISSED = 3  # exit code: the benchmark ran, a bound was missed
CIDR = "10.0.0.0/12"  # room for the memory run's ports and more


@dataclass(frozen=True)
class Goal:
    key: str
    what: str
    bound: float | None  # None: a figure reported beside the ratios, with no bound of its own
    at_least: bool = False  # a floor (throughput) rather than a ceiling
    dbs: tuple[str, ...] = ()  # the databases the bound is set for; reported on the others

    def applies(self, db: str) -> bool:
        return not self.dbs or db in self.dbs

    def met(self, value: float) -> bool:
        assert self.bound is not None
        return value >= self.bound if self.at_least else value <= self.bound


GOALS = (
    Goal("port_vs_fill", "in-process port create / one fill allocation", 2.0, dbs=("sqlite",)),
    Goal("bulk_vs_fill", "in-process bulk create, per port / one fill allocation", 1.5),
    Goal("get_network_vs_root", "HTTP GET network / GET /", 1.5, dbs=("sqlite",)),
    Goal("port_vs_root", "HTTP single port create / GET /", 3.0, dbs=("sqlite",)),
    Goal("list_vs_get_port", "HTTP GET ports?limit=1000 / GET one port", 10.0, dbs=("sqlite",)),
    # No bound: how far the list page is from reading and encoding its rows with nothing in between.
    Goal("list_vs_floor", "HTTP GET ports?limit=1000 / the page read by the driver, orjson", None),
    Goal("http_bulk_vs_root", "HTTP bulk create, per port / GET /", 1.0),
    Goal("throughput_vs_raw", "ports/s / raw insert+commit/s, same concurrency", 0.5, True, dbs=("postgresql",)),
    Goal("burst_vs_clients", "ports/s of 4x the clients / ports/s of the clients", None),
    Goal("held_vs_raw", "ports/s / raw insert+commit/s, each commit held --commit-wait-ms (PostgreSQL)", None),
    Goal("rss_ratio", "server RSS after --rss-ports port creates / after --rss-first", 1.2),
)

TAILS = ("root", "get_network", "port")  # the kinds whose p50 and p99 over HTTP are printed too
ROUNDS = 5  # rounds in which the latency kinds take turns
# Ratios of two latency kinds timed in the same rounds: each round's ratio is reported too, so that a
# reader sees whether a bound missed (or met) by the run's mean lies within the run's own spread.
PER_ROUND = {  # ratio: (top, bottom)
    "get_network_vs_root": ("get_network", "root"),
    "port_vs_root": ("port", "root"),
    "list_vs_get_port": ("list", "get_port"),
    "list_vs_floor": ("list", "list_floor"),
}

# --- yardsticks ----------------------------------------------------------------------------------


def machine_cpu() -> tuple[int, int]:
    """Clock ticks the machine's cores have been busy, and in all, since boot, summed over its cores
    (``/proc/stat``): unlike a process's CPU time, they take in the database server's share of a run."""
    with open("/proc/stat") as f:
        ticks = [int(v) for v in f.readline().split()[1:9]]  # user ... steal; guest time is within user
    idle = ticks[3] + ticks[4]  # idle, iowait
    return sum(ticks) - idle, sum(ticks)


def busy_since(start: tuple[int, int]) -> tuple[float, float]:
    """CPU seconds the machine has been busy since ``start`` (a ``machine_cpu()``), and the share of all its
    cores' time that was. A run that keeps every core busy is bound by CPU: its rate is what its CPU per
    item allows, whatever runs concurrently."""
    busy, total = machine_cpu()
    busy -= start[0]
    return busy / os.sysconf("SC_CLK_TCK"), busy / max(total - start[1], 1)


COMMIT_WAIT = "pipam_bench_commit_wait"  # the function and trigger names of ``held_commits``


@contextlib.contextmanager
def held_commits(url: str, table: str, seconds: float) -> Iterator[None]:
    """Every commit of a transaction that inserted into ``table`` waits ``seconds`` first (PostgreSQL: a
    deferred constraint trigger that sleeps), with its row locks held, as a commit waiting for a
    synchronous standby's answer does. The sleep costs no CPU: a run of such commits is bound by how
    many overlap, not by what each costs."""
    engine = make_engine(url)
    try:
        with engine.begin() as conn:
            conn.exec_driver_sql(
                f"CREATE OR REPLACE FUNCTION {COMMIT_WAIT}() RETURNS trigger LANGUAGE plpgsql"
                f" AS $$ BEGIN PERFORM pg_sleep({float(seconds)!r}); RETURN NULL; END $$"
            ).close()
            conn.exec_driver_sql(
                f"CREATE CONSTRAINT TRIGGER {COMMIT_WAIT} AFTER INSERT ON {table} DEFERRABLE INITIALLY DEFERRED"
                f" FOR EACH ROW EXECUTE FUNCTION {COMMIT_WAIT}()"
            ).close()
        yield
    finally:
        with engine.begin() as conn:
            conn.exec_driver_sql(f"DROP TRIGGER IF EXISTS {COMMIT_WAIT} ON {table}").close()
            conn.exec_driver_sql(f"DROP FUNCTION IF EXISTS {COMMIT_WAIT}()").close()
        engine.dispose()


def yardstick(url: str, rows: int, clients: int = 1, commit_wait: float = 0.0) -> tuple[float, int]:
    """Rows per second of the cheapest durable write: one-row INSERT, COMMIT, one at a time on each
    of ``clients`` concurrent connections; and the rows written. With ``commit_wait``, each commit is
    held that many seconds (``held_commits``)."""
    engine = make_engine(url, pool_size=clients)
    meta = MetaData()
    t = Table("bench_yardstick", meta, Column("id", Integer, primary_key=True), Column("v", String(64)))
    meta.drop_all(engine)
    meta.create_all(engine)
    held = held_commits(url, t.name, commit_wait) if commit_wait else contextlib.nullcontext()
    per_client = max(1, rows // clients)

    def client(n: int) -> None:
        with engine.connect() as conn:
            for i in range(per_client):
                with conn.begin():
                    conn.execute(insert(t).values(v=f"row-{n}-{i}"))

    with held:
        start = time.perf_counter()
        threads = [threading.Thread(target=client, args=(n,)) for n in range(clients)]
        for th in threads:
            th.start()
        for th in threads:
            th.join()
        elapsed = time.perf_counter() - start
    meta.drop_all(engine)
    engine.dispose()
    return per_client * clients / elapsed, per_client * clients


# The page ``GET /v2.0/ports?limit=1000`` shows, read with nothing between the driver and the JSON.
PAGE_PORTS = "SELECT * FROM ports ORDER BY id LIMIT 1000"
PAGE_ADDRESSES = {
    # Each database's quickest form (``pipam.service.views``): PostgreSQL hashes a join to the page and
    # scans every address, so it is given the page's keys as an array to look up.
    "postgresql": "SELECT * FROM ipallocations WHERE port_id = ANY(array(SELECT id FROM ports ORDER BY id LIMIT 1000))",
    "": "SELECT a.* FROM ipallocations a JOIN (SELECT id FROM ports ORDER BY id LIMIT 1000) p ON a.port_id = p.id",
}


def refresh_statistics(url: str) -> None:
    """Have PostgreSQL and MariaDB plan the list page's statements with statistics of the tables as they
    now are, as their own background statistics (autovacuum, InnoDB's recalculation) have them within a
    minute of a bulk load. Timed right after 10,000 ports went in, PostgreSQL still planned with its
    estimate of an almost empty table: the first 1,000 ports by id read by sorting the whole table instead
    of walking the primary key, 9 ms of a 22 ms page. SQLite keeps no statistics unless asked
    (``ANALYZE``), so it is left as a user's database is."""
    engine = make_engine(url)
    try:
        statement = {"postgresql": "ANALYZE ports, ipallocations", "mysql": "ANALYZE TABLE ports, ipallocations"}
        if engine.dialect.name in statement:
            with engine.begin() as conn:
                conn.exec_driver_sql(statement[engine.dialect.name]).close()
    finally:
        engine.dispose()


def page_floor(url: str) -> tuple[Callable[[], bytes], Callable[[], None]]:
    """A call that reads the first 1,000 ports and their addresses through the bare driver (one cursor,
    the two statements, a commit), makes each port a dict holding its addresses and encodes the page with
    orjson, all in this process; and a call that closes its connection.

    No policy, no wire forms, no links, no HTTP: what reading and encoding the page costs on this
    database, the floor under the list page's time. The list bound is against one ``GET`` of a port;
    this says how much of the page no request path can avoid."""
    engine = make_engine(url)
    raw = engine.raw_connection()
    addresses = PAGE_ADDRESSES.get(engine.dialect.name, PAGE_ADDRESSES[""])

    def read() -> bytes:
        cur = raw.cursor()
        cur.execute(PAGE_PORTS)
        names = [d[0] for d in cur.description]
        ports = cur.fetchall()
        cur.execute(addresses)
        address_names = [d[0] for d in cur.description]
        held: dict[Any, list[dict[str, Any]]] = {}
        port_at = address_names.index("port_id")
        for row in cur.fetchall():
            held.setdefault(row[port_at], []).append(dict(zip(address_names, row, strict=True)))
        cur.close()
        raw.commit()
        id_at = names.index("id")
        page = [{**dict(zip(names, row, strict=True)), "fixed_ips": held.get(row[id_at], [])} for row in ports]
        return orjson.dumps({"ports": page}, default=str)

    def close() -> None:
        raw.close()
        engine.dispose()

    return read, close


@contextlib.contextmanager
def client_heap_frozen() -> Iterator[None]:
    """What this process has built so far kept out of its own cyclic collector while it times the server.

    This client imports Pipam and SQLAlchemy and runs the in-process part first: a full pass of its
    collector over that heap took 70-90 ms, and landed inside whichever request was in flight (a single
    ``GET`` of one port in 89 ms among 2,000 of 0.8-1 ms, enough to move that kind's mean by a tenth).
    Frozen, the collector still runs, over what is allocated afterwards only; the server is untouched.
    """
    gc.collect()
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()


def interleaved(
    kinds: dict[str, Callable[[], object]],
    samples: int,
    rounds: int = ROUNDS,
    calls: dict[str, list[float]] | None = None,
) -> dict[str, float]:
    """Mean seconds per call of each kind, the kinds taking turns in ``rounds`` rounds; ``calls``, when
    given, receives each call's seconds (for the tail: a mean hides whether a few calls pay for all)."""
    took: dict[str, list[float]] = {name: [] for name in kinds}
    per_round = max(1, samples // rounds)
    for _ in range(rounds):
        for name, call in kinds.items():
            seconds = took[name]
            for _ in range(per_round):
                t0 = time.perf_counter()
                call()
                seconds.append(time.perf_counter() - t0)
    if calls is not None:
        calls.update(took)
    return {name: statistics.fmean(seconds) for name, seconds in took.items()}


def round_ratios(calls: dict[str, list[float]], top: str, bottom: str, rounds: int = ROUNDS) -> list[float]:
    """``top``'s mean over ``bottom``'s in each round of an ``interleaved`` run (its ``calls``)."""
    a, b = len(calls[top]) // rounds, len(calls[bottom]) // rounds
    return [
        statistics.fmean(calls[top][i * a : (i + 1) * a]) / statistics.fmean(calls[bottom][i * b : (i + 1) * b])
        for i in range(rounds)
    ]


# --- in-process ------------------------------------------------------------------------------------


def statements(db: Database, action: Callable[[], object]) -> int:
    """SQL statements (BEGIN and COMMIT included) that ``action`` sends: round trips on a networked database."""
    sent = 0

    def count(*_args: object) -> None:
        nonlocal sent
        sent += 1

    # BEGIN by its event: SQLite's goes straight to the driver and psycopg sends its own, neither
    # through a cursor SQLAlchemy sees.
    listeners = (("begin", count), ("before_cursor_execute", count), ("commit", count))
    for name, fn in listeners:
        event.listen(db.engine, name, fn)
    try:
        action()
    finally:
        for name, fn in listeners:
            event.remove(db.engine, name, fn)
    return sent


def in_process(db: Database, network_id: str, subnet_id: str, samples: int, bulk: int) -> dict[str, Any]:
    """Seconds per fill allocation, per port create, and per port of a bulk create, in one process; the
    statements each sends."""
    fill_port = db.run(lambda u: local.create(u, "port", {"network_id": network_id, "fixed_ips": []}))["id"]
    with db.session(write=False) as session:
        subnet = session.get(Subnet, subnet_id)
    body = {"network_id": network_id}

    def bulk_create() -> None:
        db.run(lambda u: local.create_many(u, "port", [body] * bulk))

    times: dict[str, Any] = interleaved(
        {
            "fill": lambda: allocate_one(db, network_id, subnet, fill_port),
            "port": lambda: db.run(lambda u: local.create(u, "port", body)),
        },
        samples,
    )
    times["statements"] = {
        "fill": statements(db, lambda: allocate_one(db, network_id, subnet, fill_port)),
        "port": statements(db, lambda: db.run(lambda u: local.create(u, "port", body))),
        "bulk_per_port": statements(db, bulk_create) / bulk,
    }
    bulk_rounds = max(1, samples // bulk) + 1
    t0 = time.perf_counter()
    for _ in range(bulk_rounds):
        bulk_create()
    times["bulk_per_port"] = (time.perf_counter() - t0) / (bulk_rounds * bulk)
    times["created"] = samples // 5 * 5 + 2 + (bulk_rounds + 1) * bulk
    return times


# --- over HTTP ---------------------------------------------------------------------------------------


def _tree(pid: int) -> list[int]:
    """``pid`` and all its descendants (``pipam serve`` and its workers); gone processes are left out."""
    pids = [pid]
    try:
        for task in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{task}/children") as f:
                pids += [p for child in f.read().split() for p in _tree(int(child))]
    except (FileNotFoundError, ProcessLookupError):
        pass
    return pids


def _proc_reading(pid: int, read: Callable[[int], float]) -> float:
    """``read`` of one process, 0 when it has exited meanwhile."""
    try:
        return read(pid)
    except (FileNotFoundError, ProcessLookupError, StopIteration):
        return 0


def _rss(pid: int) -> float:
    with open(f"/proc/{pid}/status") as f:
        return next(int(line.split()[1]) * 1024 for line in f if line.startswith("VmRSS:"))


def _cpu(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime


def rss_bytes(pid: int) -> int:
    """Resident memory of a process and all its descendants (the workers of ``pipam serve``)."""
    return int(sum(_proc_reading(p, _rss) for p in _tree(pid)))


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process and all its descendants so far."""
    return sum(_proc_reading(p, _cpu) for p in _tree(pid))


def hammer(base: str, network_id: str, total: int, clients: int) -> tuple[float, int, int]:
    """Ports/s of ``clients`` concurrent clients creating single ports; only 201s count as ports."""
    created = failures = 0
    lock = threading.Lock()
    per_client = total // clients

    def client() -> None:
        nonlocal created, failures
        with httpx.Client(base_url=base, timeout=60) as http:
            for _ in range(per_client):
                r = http.post("/v2.0/ports", json={"port": {"network_id": network_id}})
                with lock:
                    created += r.status_code == 201
                    failures += r.status_code != 201

    threads = [threading.Thread(target=client) for _ in range(clients)]
    start = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return created / (time.perf_counter() - start), created, failures


class Ports:
    """Port creates over one connection, counting what the server has created."""

    def __init__(self, http: httpx.Client, network_id: str) -> None:
        self.http = http
        self.network_id = network_id
        self.created = 0

    def one(self) -> str:
        r = self.http.post("/v2.0/ports", json={"port": {"network_id": self.network_id}})
        r.raise_for_status()
        self.created += 1
        return str(r.json()["port"]["id"])

    def bulk(self, n: int) -> float:
        """Seconds per port of one bulk create of ``n`` ports."""
        body = {"ports": [{"network_id": self.network_id}] * n}
        t0 = time.perf_counter()
        r = self.http.post("/v2.0/ports", json=body)
        took = time.perf_counter() - t0
        r.raise_for_status()
        self.created += n
        return took / n

    def bulk_until(self, total: int, n: int) -> list[float]:
        """Bulk creates of ``n`` ports until the server has created ``total``: seconds per port of each."""
        per_port = []
        while self.created < total:
            per_port.append(self.bulk(min(n, total - self.created)))
        return per_port


def over_http(
    server: Server,
    network_id: str,
    samples: int,
    bulk: int,
    list_ports: int,
    rss_first: int,
    rss_ports: int,
    rate_ports: int,
    clients: int,
    floor: Callable[[], bytes],
    refresh: Callable[[], None],
    held: Callable[[], contextlib.AbstractContextManager[None]] | None,
) -> dict[str, Any]:
    """``held``, when given, holds every commit of a port create while a second throughput run is timed
    (``held_commits`` on the ports table)."""
    out: dict[str, Any] = {}
    with httpx.Client(base_url=server.base, timeout=300) as http:
        ports = Ports(http, network_id)
        one_port = ports.one()
        for path in ("/", f"/v2.0/networks/{network_id}", f"/v2.0/ports/{one_port}"):  # warm up
            http.get(path).raise_for_status()
        calls: dict[str, list[float]] = {}
        times = interleaved(
            {
                "root": lambda: http.get("/"),
                "get_network": lambda: http.get(f"/v2.0/networks/{network_id}"),
                "port": ports.one,
            },
            samples,
            calls=calls,
        )
        out.update({f"http_{k}": v for k, v in times.items()})
        for k, seconds in calls.items():
            spread = summary(seconds)  # sorts the samples once for both figures
            out[f"http_{k}_p50"], out[f"http_{k}_p99"] = spread["p50_ms"] / 1000, spread["p99_ms"] / 1000
        bulks = ports.bulk_until(rss_first, bulk)
        out["rss_1k"] = rss_bytes(server.proc.pid)
        out["rss_1k_ports"] = ports.created
        bulks += ports.bulk_until(list_ports, bulk)
        out["http_bulk_per_port"] = sum(bulks) / len(bulks)
        refresh()
        times = interleaved(
            {
                "get_port": lambda: http.get(f"/v2.0/ports/{one_port}"),
                "list": lambda: http.get("/v2.0/ports", params={"limit": 1000}),
                "list_floor": floor,
            },
            max(ROUNDS, samples // 10),
            calls=calls,
        )
        out.update({f"http_{k}": v for k, v in times.items()})
        out["round_ratios"] = {key: round_ratios(calls, *kinds) for key, kinds in PER_ROUND.items()}
        out["list_over_ports"] = ports.created
        # Where the throughput run's CPU goes: the bound compares with a database doing one insert per
        # commit, so what the server, its clients and the database burn per port (the whole machine's
        # CPU, of which the first two are read from their processes) decides what 2 cores allow.
        server_cpu, client_cpu, machine = cpu_seconds(server.proc.pid), time.process_time(), machine_cpu()
        out["ports_per_s"], made, out["failures"] = hammer(server.base, network_id, rate_ports, clients)
        busy, out["machine_busy"] = busy_since(machine)
        out["server_cpu_ms_per_port"] = 1000 * (cpu_seconds(server.proc.pid) - server_cpu) / max(made, 1)
        out["client_cpu_ms_per_port"] = 1000 * (time.process_time() - client_cpu) / max(made, 1)
        out["machine_cpu_ms_per_port"] = 1000 * busy / max(made, 1)
        ports.created += made
        # A burst wider than the server's connections (each worker keeps ``db_connections``).
        out["ports_per_s_burst"], made, burst_failures = hammer(server.base, network_id, rate_ports, 4 * clients)
        ports.created += made
        out["failures"] += burst_failures
        out["ports_per_s_held"] = None
        if held is not None:
            with held():
                out["ports_per_s_held"], made, held_failures = hammer(server.base, network_id, rate_ports, clients)
            ports.created += made
            out["failures"] += held_failures
        ports.bulk_until(rss_ports, bulk)
        out["rss_n"] = rss_bytes(server.proc.pid)
        out["rss_n_ports"] = ports.created
    return out


# --- one database ------------------------------------------------------------------------------------


def run(kind: str, backend: str, workers: int, opts: dict[str, Any]) -> dict[str, Any]:
    db = fresh_database(kind, f"api_{backend}", backend)
    url = db.engine.url.render_as_string(hide_password=False)

    def setup(u):  # type: ignore[no-untyped-def]
        n = local.create(u, "network", {"name": "bench"})
        s = local.create(u, "subnet", {"network_id": n["id"], "cidr": CIDR, "ip_version": 4})
        return n["id"], s["id"]

    network_id, subnet_id = db.run(setup)
    try:
        figures: dict[str, Any] = in_process(db, network_id, subnet_id, opts["samples"], opts["bulk"])
    finally:
        db.dispose()
    with client_heap_frozen():
        machine = machine_cpu()
        figures["raw_per_s"], written = yardstick(url, opts["ports"], opts["clients"])
        busy, figures["raw_busy"] = busy_since(machine)
        figures["raw_cpu_ms_per_row"] = 1000 * busy / written
        wait = opts["commit_wait_ms"] / 1000 if kind == "postgresql" else 0.0
        figures["raw_per_s_held"] = yardstick(url, opts["ports"], opts["clients"], wait)[0] if wait else None
    log = Path(os.environ.get("PIPAM_BENCH_LOG_DIR", "/tmp")) / f"pipam-bench-api-{kind}-{os.getpid()}.log"
    server = Server(url, backend, log, workers=str(workers), log_level="WARNING")
    floor, close_floor = page_floor(url)
    try:
        with client_heap_frozen():
            figures.update(
                over_http(
                    server,
                    network_id,
                    opts["samples"],
                    opts["bulk"],
                    opts["list_ports"],
                    opts["rss_first"],
                    opts["rss_ports"],
                    opts["ports"],
                    opts["clients"],
                    floor,
                    lambda: refresh_statistics(url),
                    (lambda: held_commits(url, "ports", wait)) if wait else None,
                )
            )
    finally:
        close_floor()
        server.stop()
    f = figures
    figures["ratios"] = {
        "port_vs_fill": f["port"] / f["fill"],
        "bulk_vs_fill": f["bulk_per_port"] / f["fill"],
        "get_network_vs_root": f["http_get_network"] / f["http_root"],
        "port_vs_root": f["http_port"] / f["http_root"],
        "list_vs_get_port": f["http_list"] / f["http_get_port"],
        "list_vs_floor": f["http_list"] / f["http_list_floor"],
        "http_bulk_vs_root": f["http_bulk_per_port"] / f["http_root"],
        "throughput_vs_raw": f["ports_per_s"] / f["raw_per_s"],
        "burst_vs_clients": f["ports_per_s_burst"] / f["ports_per_s"],
        "held_vs_raw": f["ports_per_s_held"] / f["raw_per_s_held"] if f["raw_per_s_held"] else None,
        "rss_ratio": f["rss_n"] / f["rss_1k"],
    }
    return figures


def held_figures(r: dict[str, Any]) -> str:
    if r["ports_per_s_held"] is None:
        return ""
    wait = r["commit_wait_ms"]
    return f"; each commit held {wait:g} ms: ports/s {r['ports_per_s_held']:,.0f}, raw/s {r['raw_per_s_held']:,.0f}"


def main(
    dbs: str = typer.Option("sqlite,postgresql", help="Comma-separated: sqlite, postgresql, mariadb."),
    backend: str = typer.Option("internal", help="IPAM backend."),
    server_workers: str = typer.Option("sqlite=1,postgresql=2,mariadb=2", help="pipam serve --workers per database."),
    clients: int = typer.Option(8, help="Concurrent HTTP clients (and raw connections) of the throughput run."),
    ports_total: int = typer.Option(2000, "--ports", help="Ports created by the throughput run."),
    samples: int = typer.Option(500, help="Requests per kind for the latency ratios (and in-process calls)."),
    bulk: int = typer.Option(1000, help="Ports per bulk create."),
    list_ports: int = typer.Option(10000, help="Ports on the server when GET ports?limit=1000 is timed."),
    rss_first: int = typer.Option(1000, help="Ports created when the server's RSS is taken the first time."),
    rss_ports: int = typer.Option(100000, help="Ports created when the server's RSS is taken the second time."),
    commit_wait_ms: float = typer.Option(
        20.0,
        help="PostgreSQL: the throughput ratio once more with every commit held this long (a synchronous"
        " standby's wait); 0 leaves it out.",
        min=0,
    ),
    json_path: str | None = typer.Option(None, "--json"),
) -> None:
    workers = {k: int(v) for k, v in (item.split("=") for item in server_workers.split(","))}
    opts = {
        "samples": samples,
        "bulk": bulk,
        "list_ports": list_ports,
        "rss_first": rss_first,
        "rss_ports": rss_ports,
        "ports": ports_total,
        "clients": clients,
        "commit_wait_ms": commit_wait_ms,
    }
    load = os.getloadavg()
    out: dict[str, Any] = {"machine": machine(), "backend": backend, "options": opts, "load_before": load, "runs": {}}
    missed = []
    for kind in dbs.split(","):
        console.print(f"[bold]{kind}[/] ({workers.get(kind, 1)} server worker(s), {backend} backend) ...")
        r = out["runs"][kind] = run(kind, backend, workers.get(kind, 1), opts)
        r["server_workers"] = workers.get(kind, 1)
        r["commit_wait_ms"] = commit_wait_ms
        rows = []
        for goal in GOALS:
            value = r["ratios"][goal.key]
            bound = "(none)" if goal.bound is None else f"{'>=' if goal.at_least else '<='} {goal.bound}"
            if value is None:
                value, verdict = "not measured", "-"
            elif goal.bound is None:
                verdict = "-"
            elif not goal.applies(kind):
                verdict, bound = "-", f"({bound})"
            elif goal.met(value):
                verdict = "ok"
            else:
                verdict = "MISSED"
                missed.append(f"{kind}: {goal.what}")
            each = r["round_ratios"].get(goal.key)
            spread = f"{min(each):.2f}-{max(each):.2f}" if each else ""
            rows.append([goal.what, value, spread, bound, verdict])
        table(
            f"{kind}, {r['server_workers']} server worker(s), {clients} clients, {backend} backend",
            ["ratio", "measured", f"its {ROUNDS} rounds", "bound", ""],
            rows,
        )
        ms = {k: r[k] * 1000 for k in ("fill", "port", "bulk_per_port", "http_root", "http_get_network", "http_port")}
        ms.update({k: r[k] * 1000 for k in ("http_bulk_per_port", "http_get_port", "http_list", "http_list_floor")})
        console.print(
            "ms: " + ", ".join(f"{k} {v:.3f}" for k, v in ms.items()) + f"; ports/s {r['ports_per_s']:,.0f}"
            f" (failures {r['failures']}), raw/s {r['raw_per_s']:,.0f}; {4 * clients} clients: ports/s"
            f" {r['ports_per_s_burst']:,.0f}{held_figures(r)}; RSS {r['rss_1k'] / 2**20:.1f} MB after"
            f" {r['rss_1k_ports']:,} ports, {r['rss_n'] / 2**20:.1f} MB after {r['rss_n_ports']:,}; list over"
            f" {r['list_over_ports']:,} ports; CPU per port of the throughput run: server"
            f" {r['server_cpu_ms_per_port']:.2f} ms, clients {r['client_cpu_ms_per_port']:.2f} ms, the whole machine"
            f" {r['machine_cpu_ms_per_port']:.2f} ms (those two, the database and the rest), cores"
            f" {100 * r['machine_busy']:.0f} % busy; raw insert+commit: the whole machine"
            f" {r['raw_cpu_ms_per_row']:.2f} ms per row, cores {100 * r['raw_busy']:.0f} % busy; statements"
            f" (with COMMIT): fill allocation {r['statements']['fill']}, port create {r['statements']['port']},"
            f" bulk create per port {r['statements']['bulk_per_port']:.2f}"
        )
        console.print(
            "p50 / p99 ms over HTTP: "
            + ", ".join(f"{k} {r[f'http_{k}_p50'] * 1000:.3f} / {r[f'http_{k}_p99'] * 1000:.3f}" for k in TAILS)
        )
    out["load_after"] = os.getloadavg()
    console.print(f"load average before {load[0]:.1f}, after {out['load_after'][0]:.1f} ({os.cpu_count()} cpus)")
    write_json(json_path, out)
    if missed:
        console.print("[red]missed:[/] " + "; ".join(missed))
        raise typer.Exit(MISSED)


if __name__ == "__main__":
    typer.run(main)
