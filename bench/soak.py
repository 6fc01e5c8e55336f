#!/usr/bin/env python3
"""Helper of bench/soak.sh (issue #7): a fixed mix of sync, async and store traffic, open loop.

Every kind runs at its own fixed rate for --seconds (each request starts at its scheduled time,
whatever the previous ones do):
  sync   GET  /functions/method2                                   (examples/method2)
  async  POST /functions/method_async, unique X-Call-Id, X-Callback-Url to a receiver in this process
  pay    POST /functions/database_events/pay  -> the function writes a payment; its events add an
         invoice and the emailed mark (examples/database-events)
  store  POST /store/tables/soak/docs (token), then GET of the document it made

Then it checks that nothing acknowledged was lost: every 202 was called back, every 201 document
of `soak` reads back with the data sent, every payment answered 201 reached `emailed`.
Prints one JSON object: counts per kind and status, unexpected errors, losses, latencies.
"""
import argparse
import asyncio
import json
import time
import uuid

import aiohttp
from aiohttp import web


def pct(values, p):
    if not values:
        return None
    v = sorted(values)
    return round(v[min(len(v) - 1, int(p / 100.0 * len(v)))] * 1000, 2)


class Stats:
    def __init__(self):
        self.kinds = {}

    def add(self, kind, status, seconds):
        k = self.kinds.setdefault(kind, {"status": {}, "lat": []})
        k["status"][str(status)] = k["status"].get(str(status), 0) + 1
        k["lat"].append(seconds)

    def report(self):
        out = {}
        for kind, k in self.kinds.items():
            out[kind] = {"status": k["status"], "p50_ms": pct(k["lat"], 50), "p99_ms": pct(k["lat"], 99)}
        return out


async def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--gateway", required=True)
    ap.add_argument("--token", required=True)
    ap.add_argument("--cb-port", type=int, default=18996)
    ap.add_argument("--seconds", type=float, default=600)
    ap.add_argument("--sync-rate", type=float, default=100)
    ap.add_argument("--async-rate", type=float, default=20)
    ap.add_argument("--pay-rate", type=float, default=5)
    ap.add_argument("--store-rate", type=float, default=20)
    a = ap.parse_args()

    called_back = {}
    async def on_callback(request):
        await request.read()
        cid = request.headers.get("X-Call-Id", "")
        called_back[cid] = called_back.get(cid, 0) + 1
        return web.Response(status=200)

    app = web.Application()
    app.router.add_post("/cb", on_callback)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "0.0.0.0", a.cb_port).start()

    stats = Stats()
    accepted = set()      # async call ids answered 202
    stored = {}           # soak doc id -> data sent
    payments = []         # payment ids answered 201
    unexpected = []       # (kind, status or error)
    auth = {"Authorization": f"Bearer {a.token}"}
    conn = aiohttp.TCPConnector(limit=256)
    timeout = aiohttp.ClientTimeout(total=30)

    async with aiohttp.ClientSession(connector=conn, timeout=timeout) as s:
        async def one(kind):
            t0 = time.perf_counter()
            status = "error"
            try:
                if kind == "sync":
                    async with s.get(f"{a.gateway}/functions/method2") as r:
                        await r.read()
                        status = r.status
                    ok = status == 202   # method2 answers "202 Accepted at method 2"
                elif kind == "async":
                    cid = uuid.uuid4().hex
                    h = {"X-Call-Id": cid, "X-Callback-Url": f"http://host.docker.internal:{a.cb_port}/cb"}
                    async with s.post(f"{a.gateway}/functions/method_async", data=b'{"n":1}', headers=h) as r:
                        await r.read()
                        status = r.status
                    ok = status == 202
                    if ok:
                        accepted.add(cid)
                elif kind == "pay":
                    body = {"payer": f"p{uuid.uuid4().hex[:8]}", "amount": 12.5}
                    async with s.post(f"{a.gateway}/functions/database_events/pay", json=body) as r:
                        doc = await r.json(content_type=None) if r.status == 201 else None
                        status = r.status
                    ok = status == 201
                    if ok:
                        payments.append(doc["id"])
                else:
                    data = {"n": uuid.uuid4().hex, "at": time.time()}
                    async with s.post(f"{a.gateway}/store/tables/soak/docs", json=data, headers=auth) as r:
                        doc = await r.json(content_type=None) if r.status == 201 else None
                        status = r.status
                    ok = status == 201
                    if ok:
                        stored[doc["id"]] = data
                        async with s.get(f"{a.gateway}/store/tables/soak/docs/{doc['id']}", headers=auth) as r:
                            await r.read()
                            if r.status != 200:
                                unexpected.append(("store-read", r.status))
            except Exception as e:  # noqa: BLE001 - every failure is counted, none hidden
                ok = False
                status = type(e).__name__
            stats.add(kind, status, time.perf_counter() - t0)
            if not ok:
                unexpected.append((kind, status))

        async def drive(kind, rate):
            if rate <= 0:
                return
            tasks, start, i = [], time.perf_counter(), 0
            while True:
                at = start + i / rate
                if at - start >= a.seconds:
                    break
                delay = at - time.perf_counter()
                if delay > 0:
                    await asyncio.sleep(delay)
                tasks.append(asyncio.create_task(one(kind)))
                i += 1
            await asyncio.gather(*tasks)

        t0 = time.time()
        await asyncio.gather(drive("sync", a.sync_rate), drive("async", a.async_rate),
                             drive("pay", a.pay_rate), drive("store", a.store_rate))
        load_seconds = time.time() - t0

        # Nothing acknowledged lost: callbacks (bounded wait), documents, payments' events.
        deadline = time.time() + 60
        while time.time() < deadline and not accepted <= called_back.keys():
            await asyncio.sleep(0.5)
        missing_callbacks = len(accepted - called_back.keys())
        duplicate_callbacks = sum(n - 1 for n in called_back.values() if n > 1)

        missing_docs = wrong_docs = 0
        for doc_id, data in stored.items():
            async with s.get(f"{a.gateway}/store/tables/soak/docs/{doc_id}", headers=auth) as r:
                if r.status != 200:
                    missing_docs += 1
                elif (await r.json())["data"] != data:
                    wrong_docs += 1

        deadline = time.time() + 60
        pending = list(payments)
        while pending and time.time() < deadline:
            still = []
            for pid in pending:
                async with s.get(f"{a.gateway}/store/tables/payments/docs/{pid}", headers=auth) as r:
                    d = (await r.json())["data"] if r.status == 200 else {}
                if not (d.get("invoice") and d.get("emailed") is True):
                    still.append(pid)
            pending = still
            if pending:
                await asyncio.sleep(1)

    await runner.cleanup()
    print(json.dumps({
        "load_seconds": round(load_seconds, 1),
        "kinds": stats.report(),
        "unexpected_errors": len(unexpected),
        "unexpected_sample": [list(map(str, u)) for u in unexpected[:10]],
        "async_accepted": len(accepted),
        "async_missing_callbacks": missing_callbacks,
        "async_duplicate_callbacks": duplicate_callbacks,
        "docs_acknowledged": len(stored),
        "docs_missing": missing_docs,
        "docs_wrong": wrong_docs,
        "payments_acknowledged": len(payments),
        "payments_not_emailed": len(pending),
    }))


if __name__ == "__main__":
    asyncio.run(main())
