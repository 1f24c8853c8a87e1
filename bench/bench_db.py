#!/usr/bin/env python3
"""Result-database throughput, ours and upstream's side by side; prints one JSON line.

4 client processes over keep-alive connections: PUT transformation rows, then GET them
(req/s). Ours runs with WAL and synchronous=NORMAL; upstream with its defaults.
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

CLIENTS = 4
PER_CLIENT = int(os.environ.get("BENCH_DB_REQUESTS", "1500"))


def _worker(port, method, seed, queue):
    conn = http.client.HTTPConnection("127.0.0.1", port)
    rows = []
    for i in range(PER_CLIENT):
        tf = hashlib.sha256(f"tf {seed} {i}".encode()).hexdigest()
        res = hashlib.sha256(f"result {seed} {i}".encode()).hexdigest()
        rows.append((tf, res))
    queue.put("ready")
    start = time.perf_counter()
    errors = 0
    for tf, res in rows:
        if method == "PUT":
            body = {"type": "transformation", "checksum": tf, "value": res}
        else:
            body = {"type": "transformation", "checksum": tf}
        conn.request(method, "/", body=json.dumps(body), headers={"Content-Type": "application/json"})
        r = conn.getresponse()
        data = r.read()
        if r.status != 200 or (method == "GET" and data.decode().strip('"') != res):
            errors += 1
    queue.put((time.perf_counter() - start, errors))


def run(port, method):
    seconds, errors = common.run_clients(_worker, CLIENTS, port, method)
    return round(CLIENTS * PER_CLIENT / seconds), errors


def measure(argv_for):
    port = common.free_port()
    with tempfile.TemporaryDirectory() as d:
        proc = common.start(argv_for(os.path.join(d, "seamless.db"), port), port)
        try:
            put_rate, put_err = run(port, "PUT")
            get_rate, get_err = run(port, "GET")
        finally:
            common.stop(proc)
    return {"put_req_s": put_rate, "get_req_s": get_rate, "errors": put_err + get_err}


def main():
    ours = common.our_tool("seamless-db")
    result = {"bench": "db", "ours": measure(lambda f, port: [ours, f, "--writable", "--port", str(port)])}
    venv = common.upstream_venv()
    if venv:
        up = os.path.join(venv, "bin", "seamless-database")
        result["upstream"] = measure(lambda f, port: [up, f, "--writable", "--host", "127.0.0.1", "--port", str(port)])
        o, u = result["ours"], result["upstream"]
        result["ratio"] = {k: round(o[k] / u[k], 2) for k in ("put_req_s", "get_req_s")}
    print(json.dumps(result))


if __name__ == "__main__":
    main()
