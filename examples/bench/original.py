#!/usr/bin/env python3
"""Drive the original Python shylock (PyPI `shylock`, pinned in
requirements.txt) through the benchmark's scenarios A, B and C on a
MongoDB-protocol server, and print one line of JSON for `examples/bench.rs`.

    SHYLOCK_MONGODB_URI=mongodb://127.0.0.1:PORT/ python original.py [--scenarios ABC] ...

(or `--uri URI`, which `ps` shows: keep credentials in the variable).

* A: acquire + release in a loop, blocking API on pymongo and async API on
  motor; commands counted with a `pymongo.monitoring.CommandListener`
  (motor runs on pymongo, so the same listener sees its commands).
* B: handoff latency, from the holder's call to `release` to the waiter's
  `acquire` returning (`time.time_ns()`, the wall clock every process of the
  machine shares), waiter in the same process (asyncio task, motor) and in
  another process (this script with `--child b-waiter`).
* C: P processes (this script with `--child c-worker`) x T asyncio tasks
  (motor) acquire and release one lock for S seconds.

The only deviation from the original's documented use: on FerretDB,
`create()` fails with code 238 (NotImplemented) when it makes its TTL
index (`expireAfterSeconds`). We catch exactly that error and use the
backend as `create()` left it (its unique index on `name`, which the locks
rely on, was created first); the JSON's `workaround` says so.
"""

import argparse
import asyncio
import collections
import json
import math
import os
import platform
import random
import subprocess
import sys
import time

import motor
import pymongo
from motor.motor_asyncio import AsyncIOMotorClient
from pymongo import monitoring
from pymongo.errors import OperationFailure

import shylock
from shylock import AsyncLock, Lock, ShylockMotorAsyncIOBackend, ShylockPymongoBackend

try:
    from importlib.metadata import version as _version

    SHYLOCK_VERSION = _version("shylock")
except Exception:  # pragma: no cover
    SHYLOCK_VERSION = "?"

NOT_IMPLEMENTED = 238
WORKAROUND = []


class Commands(monitoring.CommandListener):
    """Counts the commands a client starts, by name."""

    def __init__(self):
        self.by_name = collections.Counter()

    def started(self, event):
        self.by_name[event.command_name] += 1

    def succeeded(self, event):
        pass

    def failed(self, event):
        pass

    def snap(self):
        return collections.Counter(self.by_name)


def note_workaround(err):
    if not WORKAROUND:
        msg = (err.details or {}).get("errmsg", str(err))
        WORKAROUND.append(
            "`create()` failed with code %d (%s) when it made its TTL index on "
            "`createdAt`; original.py catches exactly that error and uses the backend as "
            "`create()` left it: its unique index on `name` (made first) is what the locks "
            "rely on; only the original's 5-minute garbage collection of records is missing."
            % (err.code, msg)
        )


def check_unique_index(info):
    if not any(v.get("unique") and [k for k, _ in v["key"]] == ["name"] for v in info.values()):
        raise RuntimeError("the unique index on `name` is missing: the original cannot lock")


def sync_backend(client, db):
    try:
        return ShylockPymongoBackend.create(client, db)
    except OperationFailure as err:
        if err.code != NOT_IMPLEMENTED:
            raise
        note_workaround(err)
    # What create() did before it failed, on a fresh instance: _init_collection()
    # sets _db and _coll, then makes the unique index, then the TTL index.
    backend = ShylockPymongoBackend(client, db)
    try:
        backend._init_collection()
    except OperationFailure as err:
        if err.code != NOT_IMPLEMENTED:
            raise
    check_unique_index(backend._coll.index_information())
    return backend


async def async_backend(client, db):
    try:
        return await ShylockMotorAsyncIOBackend.create(client, db)
    except OperationFailure as err:
        if err.code != NOT_IMPLEMENTED:
            raise
        note_workaround(err)
    backend = ShylockMotorAsyncIOBackend(client, db)
    try:
        await backend._init_collection()
    except OperationFailure as err:
        if err.code != NOT_IMPLEMENTED:
            raise
    check_unique_index(await backend._coll.index_information())
    return backend


def percentile(sorted_values, p):
    """Nearest-rank percentile, as the Rust side computes it."""
    if not sorted_values:
        return float("nan")
    rank = max(1, min(len(sorted_values), math.ceil(p / 100.0 * len(sorted_values))))
    return sorted_values[rank - 1]


def a_result(cycles, elapsed, diff):
    n = max(cycles, 1)
    return {
        "cycles": cycles,
        "cycles_per_s": cycles / elapsed,
        "per_acquire": diff["insert"] / n,
        "per_release": diff["delete"] / n,
        "per_cycle": sum(diff.values()) / n,
    }


def b_result(lat_ms, waiter_calls, waited_s):
    lat_ms.sort()
    rounds = len(lat_ms)
    return {
        "rounds": rounds,
        "p50_ms": percentile(lat_ms, 50),
        "p99_ms": percentile(lat_ms, 99),
        "max_ms": lat_ms[-1] if lat_ms else float("nan"),
        "waiter_calls": waiter_calls / max(rounds, 1),
        "polls_per_s": (waiter_calls - rounds) / waited_s if waited_s else float("nan"),
    }


# ------------------------------------------------------------------ A


def a_sync(args):
    commands = Commands()
    client = pymongo.MongoClient(args.uri, event_listeners=[commands])
    try:
        lock = Lock("bench-a-sync", sync_backend(client, args.db))
        for _ in range(50):
            lock.acquire()
            lock.release()
        before = commands.snap()
        started = time.perf_counter()
        cycles = 0
        while time.perf_counter() - started < args.a_secs:
            lock.acquire()
            lock.release()
            cycles += 1
        elapsed = time.perf_counter() - started
        return a_result(cycles, elapsed, commands.snap() - before)
    finally:
        client.close()


async def a_async(args):
    commands = Commands()
    client = AsyncIOMotorClient(args.uri, event_listeners=[commands])
    try:
        lock = AsyncLock("bench-a-async", await async_backend(client, args.db))
        for _ in range(50):
            await lock.acquire()
            await lock.release()
        before = commands.snap()
        started = time.perf_counter()
        cycles = 0
        while time.perf_counter() - started < args.a_secs:
            await lock.acquire()
            await lock.release()
            cycles += 1
        elapsed = time.perf_counter() - started
        return a_result(cycles, elapsed, commands.snap() - before)
    finally:
        client.close()


def server_cost(args):
    """FerretDB's (or MongoDB's) own cost of each design's uncontended cycle,
    both driven by the same client (pymongo): the original's insert +
    delete_one(name), and the two findAndModify commands shylock (Rust)
    sends (same filters, updates and write concern as shylock-mongo)."""
    import datetime

    from pymongo import ReturnDocument
    from pymongo.write_concern import WriteConcern

    client = pymongo.MongoClient(args.uri)
    try:
        db = client[args.db]
        orig = db["server_cost_original"]
        orig.create_index("name", unique=True)
        ours = db.get_collection("server_cost_shylock", write_concern=WriteConcern(w="majority"))
        secs = max(args.a_secs / 2, 1.0)

        def original_cycle():
            orig.insert_one({"name": "cost", "createdAt": datetime.datetime.utcnow()})
            orig.delete_one({"name": "cost"})

        def shylock_cycle():
            now = datetime.datetime.utcnow()
            ours.find_one_and_update(
                {"_id": "cost", "$or": [{"owner": None}, {"expiresAt": {"$lte": now}}, {"owner": "me"}]},
                {
                    "$set": {"owner": "me", "expiresAt": now + datetime.timedelta(seconds=30)},
                    "$inc": {"seq": 1},
                    "$setOnInsert": {"epoch": 1},
                },
                upsert=True,
                return_document=ReturnDocument.AFTER,
            )
            ours.find_one_and_update(
                {"_id": "cost", "owner": "me"}, {"$set": {"owner": None, "expiresAt": now}}
            )

        def ms_per_cycle(cycle):
            for _ in range(30):
                cycle()
            started, n = time.perf_counter(), 0
            while time.perf_counter() - started < secs:
                cycle()
                n += 1
            return (time.perf_counter() - started) / n * 1000

        # Interleaved, twice, to share the server's state and drift.
        o1, s1 = ms_per_cycle(original_cycle), ms_per_cycle(shylock_cycle)
        o2, s2 = ms_per_cycle(original_cycle), ms_per_cycle(shylock_cycle)
        return {"original_ms": (o1 + o2) / 2, "shylock_ms": (s1 + s2) / 2}
    finally:
        client.close()


# ------------------------------------------------------------------ B


async def b_in(args):
    name = "bench-b-in"
    commands = Commands()
    client = AsyncIOMotorClient(args.uri, event_listeners=[commands])
    try:
        backend = await async_backend(client, args.db)
        holder = AsyncLock(name, backend)
        lat, calls, waited = [], 0, 0.0

        async def waiter():
            lock = AsyncLock(name, backend)
            await lock.acquire()
            at = time.time_ns()
            await lock.release()
            return at

        for _ in range(args.b_rounds):
            await holder.acquire()
            before = commands.by_name["insert"]
            task = asyncio.create_task(waiter())
            hold = random.uniform(0.5, 1.5) * args.hold_ms
            await asyncio.sleep(hold / 1000)
            released = time.time_ns()
            await holder.release()
            acquired = await task
            calls += commands.by_name["insert"] - before
            lat.append((acquired - released) / 1e6)
            waited += hold / 1000
        return b_result(lat, calls, waited)
    finally:
        client.close()


def spawn_child(args, role, extra=()):
    # The URI (credentials and all) reaches the child through the
    # environment it inherits, never its arguments (visible in `ps`).
    cmd = [sys.executable, __file__, "--child", role, "--db", args.db, *extra]
    return subprocess.Popen(
        cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, bufsize=1
    )


def expect(proc, prefix):
    line = proc.stdout.readline()
    if not line:
        raise RuntimeError("child exited while %s was expected" % prefix)
    line = line.rstrip("\n")
    if not line.startswith(prefix):
        raise RuntimeError("child said %r, %s was expected" % (line, prefix))
    return line


def send(proc, line):
    proc.stdin.write(line + "\n")
    proc.stdin.flush()


def b_process(args):
    name = "bench-b-process"
    client = pymongo.MongoClient(args.uri)
    child = spawn_child(args, "b-waiter")
    try:
        holder = Lock(name, sync_backend(client, args.db))
        expect(child, "READY")
        lat, calls, waited = [], 0, 0.0
        for _ in range(args.b_rounds):
            holder.acquire()
            send(child, "GO")
            expect(child, "WAITING")
            hold = random.uniform(0.5, 1.5) * args.hold_ms
            time.sleep(hold / 1000)
            released = time.time_ns()
            holder.release()
            _, acquired, n = expect(child, "ACQ").split()
            calls += int(n)
            lat.append((int(acquired) - released) / 1e6)
            waited += hold / 1000
        send(child, "QUIT")
        child.wait(timeout=30)
        return b_result(lat, calls, waited)
    finally:
        if child.poll() is None:
            child.kill()
        client.close()


async def child_b_waiter(args):
    commands = Commands()
    client = AsyncIOMotorClient(args.uri, event_listeners=[commands])
    backend = await async_backend(client, args.db)
    lock = AsyncLock("bench-b-process", backend)
    loop = asyncio.get_running_loop()
    print("READY", flush=True)
    while True:
        line = (await loop.run_in_executor(None, sys.stdin.readline)).strip()
        if line == "GO":
            before = commands.by_name["insert"]
            print("WAITING", flush=True)
            await lock.acquire()
            at = time.time_ns()
            await lock.release()
            print("ACQ %d %d" % (at, commands.by_name["insert"] - before), flush=True)
        else:
            client.close()
            return


# ------------------------------------------------------------------ C


def c_contention(args):
    extra = ["--c-tasks", str(args.c_tasks), "--c-secs", str(args.c_secs)]
    children = [spawn_child(args, "c-worker", extra) for _ in range(args.c_procs)]
    try:
        for c in children:
            expect(c, "READY")
        for c in children:
            send(c, "GO")
        grants, commands = [], 0
        for i, c in enumerate(children):
            while True:
                line = expect(c, "")
                if line.startswith("G "):
                    task, acq, rel = (int(x) for x in line.split()[1:])
                    grants.append((i * args.c_tasks + task, acq, rel))
                elif line.startswith("COMMANDS "):
                    commands += int(line.split()[1])
                elif line == "END":
                    break
                else:
                    raise RuntimeError("c-worker said %r" % line)
            c.wait(timeout=30)
        grants.sort(key=lambda g: g[1])
        n = len(grants)
        gaps = [b[1] - a[1] for a, b in zip(grants, grants[1:])]
        overlaps = sum(1 for a, b in zip(grants, grants[1:]) if b[1] < a[2])
        per_task = collections.Counter(g[0] for g in grants)
        counts = [per_task.get(t, 0) for t in range(args.c_procs * args.c_tasks)]
        return {
            "procs": args.c_procs,
            "tasks": args.c_tasks,
            "secs": args.c_secs,
            "grants": n,
            "grants_per_s": n / args.c_secs,
            "commands_per_grant": commands / max(n, 1),
            "max_gap_ms": max(gaps) / 1e6 if gaps else float("nan"),
            "min_task": min(counts),
            "max_task": max(counts),
            "overlaps": overlaps,
        }
    finally:
        for c in children:
            if c.poll() is None:
                c.kill()


async def child_c_worker(args):
    commands = Commands()
    client = AsyncIOMotorClient(args.uri, event_listeners=[commands])
    backend = await async_backend(client, args.db)
    loop = asyncio.get_running_loop()
    print("READY", flush=True)
    if (await loop.run_in_executor(None, sys.stdin.readline)).strip() != "GO":
        return
    before = sum(commands.snap().values())
    end = time.monotonic() + args.c_secs
    grants = []

    async def task(i):
        lock = AsyncLock("bench-c", backend)
        while True:
            left = end - time.monotonic()
            if left < 0.001:
                return
            try:
                # The original has no acquire timeout: bound the wait here.
                await asyncio.wait_for(lock.acquire(), timeout=left)
            except asyncio.TimeoutError:
                return
            acq = time.time_ns()
            rel = time.time_ns()
            await lock.release()
            grants.append((i, acq, rel))

    await asyncio.gather(*(task(i) for i in range(args.c_tasks)))
    total = sum(commands.snap().values()) - before
    out = ["G %d %d %d" % g for g in grants]
    out.append("COMMANDS %d" % total)
    out.append("END")
    sys.stdout.write("\n".join(out) + "\n")
    sys.stdout.flush()
    client.close()


# ------------------------------------------------------------------ main


def run(label, fn):
    print("original.py: %s" % label, file=sys.stderr, flush=True)
    try:
        return fn()
    except Exception as err:  # reported in the table, not fatal
        print("original.py: %s failed: %r" % (label, err), file=sys.stderr, flush=True)
        return {"error": repr(err)}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument(
        "--uri",
        default=os.environ.get("SHYLOCK_MONGODB_URI"),
        help="default $SHYLOCK_MONGODB_URI (better: credentials stay out of `ps`)",
    )
    ap.add_argument("--db", default="shylock_bench_py")
    ap.add_argument("--scenarios", default="ABC")
    ap.add_argument("--a-secs", type=float, default=5)
    ap.add_argument("--b-rounds", type=int, default=100)
    ap.add_argument("--hold-ms", type=float, default=100)
    ap.add_argument("--c-procs", type=int, default=4)
    ap.add_argument("--c-tasks", type=int, default=4)
    ap.add_argument("--c-secs", type=float, default=10)
    ap.add_argument("--child", choices=["b-waiter", "c-worker"])
    args = ap.parse_args()
    if not args.uri:
        ap.error("no MongoDB URI: set SHYLOCK_MONGODB_URI (or give --uri)")

    if args.child == "b-waiter":
        asyncio.run(child_b_waiter(args))
        return
    if args.child == "c-worker":
        asyncio.run(child_c_worker(args))
        return

    result = {
        "versions": "Python shylock %s (pymongo %s, motor %s, Python %s)"
        % (SHYLOCK_VERSION, pymongo.version, motor.version, platform.python_version()),
    }
    # Leftovers of an interrupted run (on a server given by --mongo-uri) would
    # hold the locks: clear this benchmark's own collection first.
    client = pymongo.MongoClient(args.uri)
    client[args.db]["shylock"].delete_many({"name": {"$regex": "^bench-"}})
    client.close()
    scen = args.scenarios.upper()
    if "A" in scen:
        result["a_sync"] = run("A blocking (pymongo)", lambda: a_sync(args))
        result["a_async"] = run("A async (motor)", lambda: asyncio.run(a_async(args)))
        result["server_cost"] = run("A server cost of each design's commands", lambda: server_cost(args))
    if "B" in scen:
        result["b_in"] = run("B in-process (motor)", lambda: asyncio.run(b_in(args)))
        result["b_process"] = run("B across processes", lambda: b_process(args))
    if "C" in scen:
        result["c"] = run(
            "C %d processes x %d tasks for %g s" % (args.c_procs, args.c_tasks, args.c_secs),
            lambda: c_contention(args),
        )
    result["workaround"] = WORKAROUND[0] if WORKAROUND else ""
    print(json.dumps(result))


if __name__ == "__main__":
    main()
