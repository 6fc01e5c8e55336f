#!/usr/bin/env python3
"""Helper of bench/store.sh (issue #5): document ids and event latency of the rfaas store.

  ids      --url U --table T --out F [--max N]
      pages through GET U/tables/T/docs?limit=1000&after=… and writes the ids, one a line;
      prints count=<n>.
  latency  --url U --nats N --table T --rate R --seconds S [--json F]
      subscribes (nats-py, JetStream ordered push consumer, deliver policy "new") to
      rfa.store.T.new-doc.* on stream RFA_STORE; the callback (the "handler") records the
      arrival time of each document id. In the same process (same monotonic clock) a client
      POSTs R small documents/s for S s to U/tables/T/docs (open loop: each at its scheduled
      time, keep-alive connections) and records when each 201 arrived, with the id from its body.
      Waits (bounded, 10 s) for missing events. Latency = handler start - 201 received.
      Prints one line of key=value figures.
"""
import argparse
import asyncio
import json
import sys
import time
import urllib.request

DOC = {"name": "Ada Lovelace", "email": "ada@example.com", "age": 36, "active": True,
       "tags": ["math", "engines"], "score": 12.5}


def pct(values, p):
    if not values:
        return float("nan")
    v = sorted(values)
    k = min(len(v) - 1, max(0, int(round(p / 100.0 * len(v) + 0.5)) - 1))
    return v[k]


def cmd_ids(a):
    ids, after = [], ""
    deadline = time.monotonic() + 120
    while len(ids) < a.max and time.monotonic() < deadline:
        url = f"{a.url}/tables/{a.table}/docs?limit=1000&after={after}"
        with urllib.request.urlopen(url, timeout=10) as r:
            page = json.load(r)
        docs = page.get("docs") or page.get("items") or page.get("data") or []
        if not docs:
            break
        ids.extend(d["id"] for d in docs)
        after = page.get("next") or ""
        if not after:
            break
    ids = ids[: a.max]
    with open(a.out, "w") as f:
        f.write("\n".join(ids) + "\n")
    print(f"count={len(ids)}")


async def cmd_latency(a):
    import aiohttp
    import nats
    from nats.js.api import DeliverPolicy

    arrivals, dup = {}, 0

    async def handler(msg):
        nonlocal dup
        t = time.perf_counter()
        doc_id = msg.subject.rsplit(".", 1)[-1]
        if doc_id in arrivals:
            dup += 1
        else:
            arrivals[doc_id] = t

    nc = await nats.connect(a.nats, connect_timeout=5, max_reconnect_attempts=3)
    js = nc.jetstream()
    sub = await js.subscribe(f"rfa.store.{a.table}.new-doc.*", stream="RFA_STORE",
                             deliver_policy=DeliverPolicy.NEW, ordered_consumer=True,
                             cb=handler, pending_msgs_limit=1 << 20)
    acks, post_lat, errors = {}, [], {}
    body = json.dumps(DOC).encode()
    conn = aiohttp.TCPConnector(limit=64)
    timeout = aiohttp.ClientTimeout(total=10)
    async with aiohttp.ClientSession(connector=conn, timeout=timeout) as s:
        async def one():
            t0 = time.perf_counter()
            try:
                async with s.post(f"{a.url}/tables/{a.table}/docs", data=body,
                                  headers={"Content-Type": "application/json"}) as r:
                    text = await r.read()
                    t1 = time.perf_counter()
                    if r.status != 201:
                        errors[str(r.status)] = errors.get(str(r.status), 0) + 1
                        return
                    acks[json.loads(text)["id"]] = t1
                    post_lat.append((t1 - t0) * 1000)
            except Exception as e:  # noqa: BLE001
                errors[type(e).__name__] = errors.get(type(e).__name__, 0) + 1

        # warm the connection pool (these are not measured)
        await asyncio.gather(*(one() for _ in range(8)))
        acks.clear(); post_lat.clear()
        await asyncio.sleep(0.5)
        n = int(a.rate * a.seconds)
        start = time.perf_counter()
        tasks = []
        for i in range(n):
            delay = start + i / a.rate - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(one()))
        await asyncio.gather(*tasks)
        send_secs = time.perf_counter() - start
    deadline = time.perf_counter() + 10
    while time.perf_counter() < deadline and any(i not in arrivals for i in acks):
        await asyncio.sleep(0.05)
    await sub.unsubscribe()
    await nc.close()
    lat = [(arrivals[i] - t) * 1000 for i, t in acks.items() if i in arrivals]
    missing = sum(1 for i in acks if i not in arrivals)
    fig = {
        "writes": len(acks), "rate": round(len(acks) / send_secs, 1), "events": len(lat),
        "missing": missing, "duplicates": dup, "errors": errors,
        "p50_ms": round(pct(lat, 50), 3), "p90_ms": round(pct(lat, 90), 3),
        "p99_ms": round(pct(lat, 99), 3), "max_ms": round(max(lat), 3) if lat else None,
        "min_ms": round(min(lat), 3) if lat else None,
        "negative": sum(1 for x in lat if x < 0),
        "post_p50_ms": round(pct(post_lat, 50), 3), "post_p99_ms": round(pct(post_lat, 99), 3),
    }
    if a.json:
        with open(a.json, "w") as f:
            json.dump({"figures": fig, "latencies_ms": lat}, f)
    print(" ".join(f"{k}={json.dumps(v, separators=(',', ':'))}" for k, v in fig.items()))


def main():
    p = argparse.ArgumentParser()
    sp = p.add_subparsers(dest="cmd", required=True)
    i = sp.add_parser("ids")
    i.add_argument("--url", required=True); i.add_argument("--table", default="bench")
    i.add_argument("--out", required=True); i.add_argument("--max", type=int, default=100000)
    l = sp.add_parser("latency")
    l.add_argument("--url", required=True); l.add_argument("--nats", required=True)
    l.add_argument("--table", default="bench"); l.add_argument("--rate", type=float, default=200)
    l.add_argument("--seconds", type=float, default=10); l.add_argument("--json")
    a = p.parse_args()
    if a.cmd == "ids":
        cmd_ids(a)
    else:
        asyncio.run(cmd_latency(a))


if __name__ == "__main__":
    sys.exit(main())
