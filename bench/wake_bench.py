#!/usr/bin/env python3
"""Wake latency of a paused or stopped function: through the rfaas gateway, and the raw engine
figure beside it, measured in the same run (bench/scale.sh drives it).

  raw-resume  engine API unpause of a paused replica -> first 200 straight from its container IP
  raw-cold    engine API start of a stopped replica  -> first 200 straight from its container IP
  resume      a call through the gateway to a function the scaler paused (idle) -> its 200
  cold        a call through the gateway to a function the scaler stopped (idle) -> its 200

Usage: wake_bench.py <kind> <n> <gateway url> <function> <instance>
Prints one line per wake (milliseconds) and a summary line `<kind> p50=<ms> p99=<ms> n=<n>`.
"""

import http.client
import json
import socket
import subprocess
import sys
import time


class UnixHTTPConnection(http.client.HTTPConnection):
    def __init__(self, path):
        super().__init__("localhost", timeout=30)
        self.path = path

    def connect(self):
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.connect(self.path)
        self.sock = s


def engine(method, path):
    c = UnixHTTPConnection("/var/run/docker.sock")
    c.request(method, path)
    r = c.getresponse()
    body = r.read()
    c.close()
    if r.status >= 300:
        raise RuntimeError(f"engine {method} {path}: {r.status} {body[:200]!r}")
    return body


def replicas(instance, function):
    out = subprocess.run(
        ["docker", "ps", "-a", "--filter", f"label=io.rfaas.instance={instance}",
         "--filter", f"label=io.rfaas.function={function}", "--format", "{{.Names}} {{.State}}"],
        check=True, capture_output=True, text=True).stdout
    return [tuple(l.split(" ", 1)) for l in out.splitlines() if l.strip()]


def wait_state(instance, function, state, timeout=60):
    deadline = time.time() + timeout
    while time.time() < deadline:
        r = replicas(instance, function)
        if r and all(s == state for _, s in r):
            return [n for n, _ in r]
        time.sleep(0.05)
    raise RuntimeError(f"{function} never became {state}: {replicas(instance, function)}")


def ip_of(container):
    info = json.loads(engine("GET", f"/containers/{container}/json"))
    nets = info["NetworkSettings"]["Networks"]
    return next(iter(nets.values()))["IPAddress"]


def first_200(host, port, path, timeout=30):
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            c = http.client.HTTPConnection(host, port, timeout=timeout)
            c.request("GET", path)
            r = c.getresponse()
            r.read()
            c.close()
            if r.status == 200:
                return
        except OSError:
            time.sleep(0.001)
    raise RuntimeError(f"no 200 from {host}:{port}{path}")


def pct(values, p):
    s = sorted(values)
    k = min(len(s) - 1, max(0, int(round(p / 100.0 * (len(s) - 1)))))
    return s[k]


def main():
    kind, n, gateway, function, instance = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4], sys.argv[5]
    gw = gateway.replace("http://", "")
    gw_host, gw_port = gw.split(":")
    times = []
    for i in range(n):
        if kind == "raw-resume":
            (name,) = wait_state(instance, function, "running")
            ip = ip_of(name)
            engine("POST", f"/containers/{name}/pause")
            time.sleep(0.2)
            t0 = time.perf_counter()
            engine("POST", f"/containers/{name}/unpause")
            first_200(ip, 6000, "/healthz")
        elif kind == "raw-cold":
            (name,) = wait_state(instance, function, "running")
            engine("POST", f"/containers/{name}/stop?t=10")
            time.sleep(0.2)
            t0 = time.perf_counter()
            engine("POST", f"/containers/{name}/start")
            ip = ip_of(name)
            first_200(ip, 6000, "/healthz")
        elif kind in ("resume", "cold"):
            wait_state(instance, function, "paused" if kind == "resume" else "exited")
            time.sleep(0.1)
            t0 = time.perf_counter()
            first_200(gw_host, int(gw_port), f"/functions/{function}/")
        else:
            sys.exit(f"unknown kind {kind}")
        ms = (time.perf_counter() - t0) * 1000
        times.append(ms)
        print(f"{kind} {i} {ms:.1f}", flush=True)
    print(f"{kind} p50={pct(times, 50):.1f} p99={pct(times, 99):.1f} n={len(times)}", flush=True)


if __name__ == "__main__":
    main()
