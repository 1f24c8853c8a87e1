#!/usr/bin/env python3
"""Hashserver throughput, ours and upstream's side by side; prints one JSON line.

small: 4 client processes, keep-alive, PUT then GET of distinct 4 KiB buffers (req/s).
large: GET of one 64 MiB buffer, repeated (MiB/s), client reads without hashing.
rss:   server peak RSS growth while serving 1 GiB (16 x 64 MiB GETs).
"""

import hashlib
import http.client
import json
import os
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402

SMALL = 4096
CLIENTS = 4
PER_CLIENT = int(os.environ.get("BENCH_SMALL_REQUESTS", "1500"))
LARGE = 64 << 20
LARGE_REPEAT = 16


def _small_worker(port, method, seed, queue):
    conn = http.client.HTTPConnection("127.0.0.1", port)
    bufs = [seed.to_bytes(4, "little") + i.to_bytes(4, "little") + bytes(SMALL - 8) for i in range(PER_CLIENT)]
    css = [hashlib.sha256(b).hexdigest() for b in bufs]
    queue.put("ready")
    start = time.perf_counter()
    errors = 0
    for b, cs in zip(bufs, css, strict=True):
        if method == "PUT":
            conn.request("PUT", "/" + cs, body=b)
        else:
            conn.request("GET", "/" + cs)
        r = conn.getresponse()
        data = r.read()
        if r.status not in (200, 201) or (method == "GET" and data != b):
            errors += 1
    queue.put((time.perf_counter() - start, errors))


def small(port, method):
    seconds, errors = common.run_clients(_small_worker, CLIENTS, port, method)
    return round(CLIENTS * PER_CLIENT / seconds), errors


def large_get(port, cs, repeat):
    conn = http.client.HTTPConnection("127.0.0.1", port)
    buf = bytearray(1 << 20)
    view = memoryview(buf)
    start = time.perf_counter()
    for _ in range(repeat):
        conn.request("GET", "/" + cs)
        r = conn.getresponse()
        total = 0
        while n := r.readinto(view):
            total += n
        assert r.status == 200 and total == LARGE, (r.status, total)
    return round(repeat * LARGE / (1 << 20) / (time.perf_counter() - start))


def measure(argv_for, label):
    port = common.free_port()
    with tempfile.TemporaryDirectory() as d:
        proc = common.start(argv_for(d, port), port)
        try:
            put_rate, put_err = small(port, "PUT")
            get_rate, get_err = small(port, "GET")
            big = os.urandom(LARGE)
            cs = hashlib.sha256(big).hexdigest()
            conn = http.client.HTTPConnection("127.0.0.1", port)
            conn.request("PUT", "/" + cs, body=big)
            assert conn.getresponse().read() is not None
            del big
            large_get(port, cs, 1)  # first GET verifies; steady state after
            rss_before = common.rss_kib(proc.pid)
            with common.RssSampler(proc.pid) as sampler:
                mib_s = large_get(port, cs, LARGE_REPEAT)
            rss_peak = sampler.peak
            return {
                "small_put_req_s": put_rate, "small_get_req_s": get_rate,
                "errors": put_err + get_err, "large_get_mib_s": mib_s,
                "rss_mib": round(rss_before / 1024, 1),
                "rss_growth_serving_1gib_mib": round(max(0, rss_peak - rss_before) / 1024, 1),
            }
        finally:
            common.stop(proc)


def main():
    ours = common.our_tool("seamless-hashserver")
    result = {"bench": "hashserver", "ours": measure(
        lambda d, port: [ours, d, "--writable", "--port", str(port)], "ours")}
    venv = common.upstream_venv()
    if venv:
        up = os.path.join(venv, "bin", "hashserver")
        result["upstream"] = measure(lambda d, port: [up, d, "--writable", "--port", str(port)], "upstream")
        o, u = result["ours"], result["upstream"]
        result["ratio"] = {k: round(o[k] / u[k], 2) for k in ("small_put_req_s", "small_get_req_s", "large_get_mib_s")}
    print(json.dumps(result))


if __name__ == "__main__":
    main()
