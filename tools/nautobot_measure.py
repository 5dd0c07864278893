#!/usr/bin/env python3
"""Measure a private Nautobot (tests/nautobot_server.py) the way the Nautobot driver will use it.

Prints: the fixture's start-up steps; per-call cost of available-ips, of a specific ip-address create and
of a bulk create of 100 (this repo's httpx client, and pynautobot when installed); the outcome of
``--clients`` concurrent clients each making ``--calls`` available-ips calls on one prefix (nautobot#8297);
the outcome of concurrent creates of one same address. Only talks to the servers it starts itself.

    .venv/bin/python tools/nautobot_measure.py [--clients 8] [--calls 25] [--workers 4]
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import statistics
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "src"))

from tests.nautobot_server import NautobotServer  # noqa: E402

from pipam.ipam.drivers.nautobot.client import NautobotClient, NautobotError  # noqa: E402


def per_call(label: str, n: int, call: Callable[[int], object]) -> None:
    """Wall time per call, and this process's CPU time per call (what the client library itself costs)."""
    times = []
    cpu = time.process_time()
    for i in range(n):
        t = time.perf_counter()
        call(i)
        times.append((time.perf_counter() - t) * 1000)
    cpu_ms = (time.process_time() - cpu) * 1000 / n
    median, p90 = statistics.median(times), sorted(times)[n * 9 // 10]
    print(f"  {label:<46} n={n:<3} median {median:7.1f} ms  p90 {p90:7.1f} ms  client CPU {cpu_ms:5.2f} ms")


def outcome(exc: BaseException | None) -> str:
    if exc is None:
        return "ok"
    status = getattr(exc, "status", None)
    return f"{type(exc).__name__}({status})"


def run_threads(n: int, work: Callable[[int], None]) -> None:
    threads = [threading.Thread(target=work, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()


def pynautobot_behaviour(server: NautobotServer, nb: Any, ns: str, active: str) -> None:
    """What pynautobot does on the cases the driver must tell apart."""
    import pynautobot

    full = nb.ipam.prefixes.create(prefix="10.9.0.0/30", namespace=ns, status=active)
    full.available_ips.create([{"status": active}, {"status": active}])
    try:
        full.available_ips.create({"status": active})
    except Exception as exc:
        print(f"  pynautobot, full prefix: {type(exc).__module__}.{type(exc).__name__}")
    print(f"  pynautobot, next call on the same session after the 204: status() ok={bool(nb.status())}")
    made = nb.ipam.ip_addresses.create(
        [{"address": f"10.9.0.{i}/30", "namespace": ns, "status": active} for i in (0, 3)]
    )
    print(f"  pynautobot, bulk create: returns {type(made).__name__} of {len(made)}")
    print(f"  pynautobot, bulk delete: returns {nb.ipam.ip_addresses.delete([r.id for r in made])!r}")
    try:
        nb.ipam.ip_addresses.create(address="10.9.0.1/30", namespace=ns, status=active)
    except pynautobot.RequestError as exc:
        print(f"  pynautobot, duplicate: {type(exc).__module__}.{type(exc).__name__} status={exc.req.status_code}")
    server.stop()
    try:
        nb.status()
    except Exception as exc:
        print(f"  pynautobot, server stopped: {type(exc).__module__}.{type(exc).__name__}")
    server.start()
    nb.status()
    server.freeze()
    done = threading.Event()

    def call() -> None:
        with contextlib.suppress(Exception):
            nb.status()
        done.set()

    threading.Thread(target=call, daemon=True).start()
    print(f"  pynautobot, server hung: call still waiting after 10 s: {not done.wait(10)}")
    server.thaw()
    print(f"  pynautobot, after thaw the call returned: {done.wait(30)}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--calls", type=int, default=25)
    parser.add_argument("--workers", type=int, default=4, help="uWSGI processes")
    parser.add_argument("--rounds", type=int, default=20, help="rounds of concurrent creates of one address")
    args = parser.parse_args()

    t = time.monotonic()
    server = NautobotServer(workers=args.workers)
    print(f"server up in {time.monotonic() - t:.1f} s: {server.timings}")
    try:
        c = NautobotClient(server.url, server.token)
        ns = c.namespace()["id"]
        active = c.status_id()

        print("per call (one client; keep-alive except available-ips, which this client sends with Connection: close):")
        per_call("GET status/", 5, lambda i: c.status())
        per_call("GET ipam/namespaces/?limit=1", 50, lambda i: c._get("ipam/namespaces/", limit=1))
        p = c.create_prefix("10.1.0.0/16", ns, active)
        specific = c.create_prefix("10.4.0.0/16", ns, active)
        per_call("POST available-ips (1 address), empty /16", 50, lambda i: c.allocate_next(p["id"], active))
        url = f"ipam/prefixes/{p['id']}/available-ips/"
        per_call("  same, keep-alive (raw httpx)", 50, lambda i: c.http.post(url, json={"status": active}))
        per_call("POST ip-addresses (1 specific)", 50, lambda i: c.create_ip(f"10.4.1.{i + 1}/16", ns, active))
        per_call(
            "POST ip-addresses (bulk of 100)",
            5,
            lambda i: c.bulk_create_ips(
                [{"address": f"10.4.{10 + i}.{j}/16", "namespace": ns, "status": active} for j in range(1, 101)]
            ),
        )
        per_call("POST available-ips (bulk of 100)", 5, lambda i: c.allocate_next(p["id"], active, count=100))
        held = sum(1 for _ in c.ips_of_prefix(p["id"]))
        per_call(f"POST available-ips (1), /16 holding {held}", 20, lambda i: c.allocate_next(p["id"], active))
        per_call(
            "GET ip-addresses?parent= (page of 100)",
            10,
            lambda i: c._get("ipam/ip-addresses/", parent=p["id"], limit=100),
        )
        per_call(
            "GET ip-addresses?parent= (page of 1000)",
            5,
            lambda i: c._get("ipam/ip-addresses/", parent=p["id"], limit=1000),
        )
        ids = [ip["id"] for ip in c.ips_of_prefix(specific["id"])]
        per_call("DELETE ip-addresses (bulk of 100)", 5, lambda i: c.bulk_delete_ips(ids[i * 100 : (i + 1) * 100]))
        per_call("DELETE ip-addresses/{id} (one)", 20, lambda i: c.delete_ip(ids[500 + i]))

        try:
            import pynautobot
        except ImportError:
            print("  (pynautobot not installed: no comparison)")
        else:
            nb = pynautobot.api(server.url, token=server.token)
            prefix = nb.ipam.prefixes.get(p["id"])
            per_call("pynautobot: GET ipam/namespaces/?limit=1", 50, lambda i: nb.ipam.namespaces.filter(limit=1))
            allocate_pn = prefix.available_ips.create
            per_call("pynautobot: available_ips.create()", 50, lambda i: allocate_pn({"status": active}))
            per_call(
                "pynautobot: ip_addresses.create() (specific)",
                50,
                lambda i: nb.ipam.ip_addresses.create(address=f"10.4.2.{i + 1}/16", namespace=ns, status=active),
            )
            pynautobot_behaviour(server, nb, ns, active)

        t = time.monotonic()
        server.stop()
        stopped = time.monotonic() - t
        t = time.monotonic()
        server.start()
        print(f"restart of the Nautobot process: stop {stopped:.1f} s, start {time.monotonic() - t:.1f} s")

        print(f"concurrent available-ips: {args.clients} clients x {args.calls} calls on one prefix (nautobot#8297):")
        p2 = c.create_prefix("10.2.0.0/22", ns, active)
        results: collections.Counter[str] = collections.Counter()
        hosts: list[str] = []
        lock = threading.Lock()

        def allocate(_: int) -> None:
            with NautobotClient(server.url, server.token, timeout=30) as mine:
                for _ in range(args.calls):
                    error: BaseException | None = None
                    try:
                        got = mine.allocate_next(p2["id"], active)
                    except NautobotError as exc:
                        error = exc
                    with lock:
                        results[outcome(error)] += 1
                        if error is None:
                            hosts.append(got[0]["host"])
                        elif not results.get("first-error-" + outcome(error)):
                            results["first-error-" + outcome(error)] = 1
                            print(f"    e.g. {str(error)[:200]}")

        t = time.monotonic()
        run_threads(args.clients, allocate)
        total = args.clients * args.calls
        failed = total - results["ok"]
        summary = {k: v for k, v in results.items() if not k.startswith("first-")}
        print(f"  {summary}: {failed}/{total} failed ({100 * failed / total:.0f}%) in {time.monotonic() - t:.1f} s")
        print(f"  distinct addresses handed out: {len(set(hosts))} of {len(hosts)} successes")
        stored = [ip["host"] for ip in c.ips_of_prefix(p2["id"])]
        print(f"  ip-addresses stored in the prefix: {len(stored)}, distinct hosts {len(set(stored))}")

        print(f"concurrent creates of one same address: {args.clients} clients x {args.rounds} rounds:")
        p3 = c.create_prefix("10.3.0.0/24", ns, active)
        per_round: collections.Counter[str] = collections.Counter()
        for r in range(args.rounds):
            barrier = threading.Barrier(args.clients)
            round_results: list[str] = []

            def create(
                _: int, r: int = r, barrier: threading.Barrier = barrier, out: list[str] = round_results
            ) -> None:
                with NautobotClient(server.url, server.token, timeout=30) as mine:
                    mine.status()  # connect before the barrier, so the creates really start together
                    barrier.wait()
                    error: BaseException | None = None
                    try:
                        mine.create_ip(f"10.3.0.{r + 1}/24", ns, active)
                    except NautobotError as exc:
                        error = exc
                    with lock:
                        out.append(outcome(error))

            run_threads(args.clients, create)
            per_round[f"ok={round_results.count('ok')}"] += 1
            for o in round_results:
                results["same:" + o] += 1
        print(f"  rounds by number of successful creates: {dict(per_round)}")
        print(f"  outcomes: { {k[5:]: v for k, v in results.items() if k.startswith('same:')} }")
        stored = [ip["host"] for ip in c.ips_of_prefix(p3["id"])]
        print(f"  stored: {len(stored)} ip-addresses, {len(set(stored))} distinct hosts")
        c.close()
    finally:
        server.destroy()
    return 0


if __name__ == "__main__":
    sys.exit(main())
