#!/usr/bin/env python3
"""Helper of bench/async.sh (issue #4): end-to-end async calls, 202 -> callback.

A callback receiver (aiohttp, listening on 0.0.0.0:<cb-port>, reached from the function's
container as http://host.docker.internal:<cb-port>/cb) records the arrival of every callback keyed
by its X-Call-Id; a client in the same process (same monotonic clock) sends the calls.

  latency  --url U --cb-port P --rate R --seconds S
      sends R calls/s for S s (open loop, each call at its scheduled time), records each call's
      send and 202 time; waits (bounded) for the callbacks. Latency = callback arrival - 202.
  wrk      --url U --cb-port P --seconds S --conns C --lua F
      sends as fast as wrk can (wrk -t1 -cC -dS, the lua script gives each call a unique
      X-Call-Id and the X-Callback-Url), then waits (bounded) until the callbacks stop arriving.
      Completion rate = callbacks / (last callback - wrk start).

Prints one line of key=value figures (and a JSON file with --json).
"""
import argparse
import asyncio
import json
import os
import re
import sys
import time

import aiohttp
from aiohttp import web


def pct(values, p):
    if not values:
        return float("nan")
    v = sorted(values)
    k = min(len(v) - 1, max(0, int(round(p / 100.0 * len(v) + 0.5)) - 1))
    return v[k]


class Receiver:
    def __init__(self):
        self.arrivals = {}  # call id -> first arrival (perf_counter)
        self.duplicates = 0
        self.statuses = {}
        self.total = 0

    async def handle(self, request):
        t = time.perf_counter()
        await request.read()
        cid = request.headers.get("X-Call-Id", "")
        st = request.headers.get("X-Function-Status", "?")
        self.statuses[st] = self.statuses.get(st, 0) + 1
        self.total += 1
        if cid in self.arrivals:
            self.duplicates += 1
        else:
            self.arrivals[cid] = t
        return web.Response(status=200)

    async def start(self, port):
        app = web.Application(client_max_size=1 << 20)
        app.router.add_route("*", "/{tail:.*}", self.handle)
        self.runner = web.AppRunner(app, access_log=None)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "0.0.0.0", port, backlog=1024)
        await site.start()

    async def wait_quiet(self, expected, quiet_s, max_s):
        """Until `expected` callbacks arrived, or none arrived for quiet_s, or max_s passed."""
        start = time.perf_counter()
        last_n, last_change = -1, time.perf_counter()
        while True:
            n = len(self.arrivals)
            now = time.perf_counter()
            if n != last_n:
                last_n, last_change = n, now
            if n >= expected or now - last_change >= quiet_s or now - start >= max_s:
                return
            await asyncio.sleep(0.05)


async def run_latency(a, rec):
    prefix = f"lat-{os.getpid()}-{int(time.time())}-"
    cb = f"http://host.docker.internal:{a.cb_port}/cb"
    sent, acc, other = {}, {}, {}
    conn = aiohttp.TCPConnector(limit=256)
    timeout = aiohttp.ClientTimeout(total=10)
    n = int(a.rate * a.seconds)
    body = b'{"n":1}'
    async with aiohttp.ClientSession(connector=conn, timeout=timeout) as s:
        # warm the connection pool (these calls are not counted)
        for i in range(20):
            try:
                async with s.post(a.url, data=body, headers={"X-Call-Id": f"{prefix}warm{i}", "X-Callback-Url": cb}) as r:
                    await r.read()
            except Exception:
                pass
        await asyncio.sleep(1.0)
        rec.arrivals.clear(); rec.duplicates = 0; rec.total = 0; rec.statuses.clear()

        async def one(i):
            cid = f"{prefix}{i}"
            t0 = time.perf_counter()
            sent[cid] = t0
            try:
                async with s.post(a.url, data=body, headers={"X-Call-Id": cid, "X-Callback-Url": cb,
                                                             "Content-Type": "application/json"}) as r:
                    await r.read()
                    t1 = time.perf_counter()
                    if r.status == 202:
                        acc[cid] = t1
                    else:
                        other[r.status] = other.get(r.status, 0) + 1
            except Exception as e:
                k = type(e).__name__
                other[k] = other.get(k, 0) + 1

        start = time.perf_counter()
        tasks = []
        late = 0
        for i in range(n):
            target = start + i / a.rate
            d = target - time.perf_counter()
            if d > 0:
                await asyncio.sleep(d)
            elif d < -0.005:
                late += 1
            tasks.append(asyncio.create_task(one(i)))
        send_end = time.perf_counter()
        await asyncio.gather(*tasks)
        await rec.wait_quiet(len(acc), quiet_s=a.quiet, max_s=a.max_wait)

    # exclude warm-up callbacks that arrived late
    arrivals = {k: v for k, v in rec.arrivals.items() if k in sent}
    lat = [(arrivals[c] - acc[c]) * 1000 for c in acc if c in arrivals]
    acc_lat = [(acc[c] - sent[c]) * 1000 for c in acc]
    e2e = [(arrivals[c] - sent[c]) * 1000 for c in acc if c in arrivals]
    lost = sum(1 for c in acc if c not in arrivals)
    unexpected = sum(1 for c in arrivals if c not in acc)
    first = min(acc.values()) if acc else start
    last_cb = max(arrivals.values()) if arrivals else first
    res = {
        "mode": "latency", "rate": a.rate, "seconds": a.seconds, "sent": n,
        "send_rate": round(n / max(1e-9, send_end - start), 1), "late_sends": late,
        "accepted": len(acc), "refused": other, "callbacks": len(arrivals),
        "duplicates": rec.duplicates, "lost": lost, "unexpected": unexpected,
        "statuses": dict(rec.statuses),
        "completion_rate": round(len(arrivals) / max(1e-9, last_cb - first), 1),
        "cb_p50_ms": round(pct(lat, 50), 2), "cb_p90_ms": round(pct(lat, 90), 2),
        "cb_p99_ms": round(pct(lat, 99), 2), "cb_max_ms": round(max(lat) if lat else float("nan"), 2),
        "accept_p50_ms": round(pct(acc_lat, 50), 2), "accept_p99_ms": round(pct(acc_lat, 99), 2),
        "e2e_p50_ms": round(pct(e2e, 50), 2), "e2e_p99_ms": round(pct(e2e, 99), 2),
    }
    return res


async def run_wrk(a, rec):
    prefix = f"thr-{os.getpid()}-{int(time.time())}-"
    cb = f"http://host.docker.internal:{a.cb_port}/cb"
    env = dict(os.environ, CALL_PREFIX=prefix, CALLBACK_URL=cb)
    cmd = ["wrk", "-t1", f"-c{a.conns}", f"-d{int(a.seconds)}s", "-s", a.lua, a.url]
    start = time.perf_counter()
    p = await asyncio.create_subprocess_exec(*cmd, env=env, stdout=asyncio.subprocess.PIPE,
                                             stderr=asyncio.subprocess.STDOUT)
    out, _ = await p.communicate()
    wrk_end = time.perf_counter()
    out = out.decode(errors="replace")
    m = re.search(r"(\d+) requests in", out)
    total = int(m.group(1)) if m else 0
    m = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    non2xx = int(m.group(1)) if m else 0
    m = re.search(r"Socket errors: (.*)", out)
    sockerr = m.group(1).strip() if m else ""
    accepted = total - non2xx
    at_wrk_end = len(rec.arrivals)
    await rec.wait_quiet(accepted + a.conns, quiet_s=a.quiet, max_s=a.max_wait)
    arr = {k: v for k, v in rec.arrivals.items() if k.startswith(prefix)}
    times = sorted(arr.values())
    last = times[-1] if times else start
    first = times[0] if times else start
    # calls in flight when wrk stopped may have been stored without being counted: up to `conns`
    lost = max(0, accepted - len(arr))
    drain = [t for t in times if t > wrk_end]
    res = {
        "mode": "wrk", "seconds": a.seconds, "conns": a.conns, "wrk_requests": total,
        "accepted": accepted, "non2xx": non2xx, "socket_errors": sockerr,
        "accept_rate": round(accepted / max(1e-9, wrk_end - start), 1),
        "callbacks": len(arr), "duplicates": rec.duplicates, "lost_at_least": lost,
        "extra_uncounted": max(0, len(arr) - accepted),
        "statuses": dict(rec.statuses),
        "callbacks_during_send": at_wrk_end,
        "completion_rate": round(len(arr) / max(1e-9, last - start), 1),
        "completion_rate_first_to_last_cb": round(len(arr) / max(1e-9, last - first), 1),
        "drain_rate": round(len(drain) / max(1e-9, last - wrk_end), 1) if drain else 0,
        "drain_seconds": round(max(0.0, last - wrk_end), 2),
    }
    return res


async def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("mode", choices=["latency", "wrk"])
    ap.add_argument("--url", required=True)
    ap.add_argument("--cb-port", type=int, required=True)
    ap.add_argument("--rate", type=float, default=500)
    ap.add_argument("--seconds", type=float, default=10)
    ap.add_argument("--conns", type=int, default=32)
    ap.add_argument("--lua")
    ap.add_argument("--quiet", type=float, default=5, help="stop waiting after this long without a callback")
    ap.add_argument("--max-wait", type=float, default=90, help="never wait longer for callbacks")
    ap.add_argument("--json")
    a = ap.parse_args()
    rec = Receiver()
    await rec.start(a.cb_port)
    try:
        res = await (run_latency(a, rec) if a.mode == "latency" else run_wrk(a, rec))
    finally:
        await rec.runner.cleanup()
    print(" ".join(f"{k}={json.dumps(v, separators=(',', ':'))}" for k, v in res.items()))
    if a.json:
        with open(a.json, "w") as f:
            json.dump(res, f)


if __name__ == "__main__":
    asyncio.run(main())
