#!/usr/bin/env python3
"""Does loading a configuration show in seamless-run's cache-hit latency? One JSON line.

Median cache-hit wall time of `seamless-run 'seq 1 10 | tac'` with no configuration,
and with a seamless.yaml (stages, a cluster) plus a clusters.yaml of 20 clusters,
measured in the same run. Target: the configured hit within 15 ms of the zero-config one.
"""

import json
import os
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench_run  # noqa: E402
import common  # noqa: E402

REPEAT = int(os.environ.get("BENCH_RUN_REPEAT", "21"))


def clusters_yaml(root):
    lines = ["local_cluster: laptop"]
    for i in range(20):
        name = "laptop" if i == 0 else f"cluster{i:02d}"
        ctype = "local" if i == 0 else "slurm"
        lines += [f"{name}:", f"  type: {ctype}", "  default_queue: normal", "  queues:",
                  "    normal: {cores: 4, conda: seamless, walltime: '02:00:00', memory: 8GB}",
                  "    big: {TEMPLATE: normal, cores: 32, memory: 256GB}", "  frontends:"]
        lines.append(f"    - hashserver: {{bufferdir: {root}/bufs{i}}}" if i == 0 else
                     f"    - hostname: login{i}.example.org")
        if i == 0:
            lines.append(f"      database: {{database_dir: {root}/dbs{i}}}")
        else:
            lines += [f"      hashserver: {{bufferdir: ~/bufs{i}, port_start: 5{i:02d}00, port_end: 5{i:02d}99}}",
                      f"      database: {{database_dir: ~/dbs{i}}}",
                      "      daskserver: {network_interface: ib0, port_start: 60000, port_end: 60100}"]
    return "\n".join(lines) + "\n"


SEAMLESS_YAML = """\
- project: bench
- cluster: laptop
- execution: process
- stage prod:
    - cluster: cluster05
    - execution: remote
    - queue: big
- stage test:
    - project: benchtest
"""


def main():
    tool = common.our_tool("seamless-run")
    env0 = {k: v for k, v in os.environ.items() if not k.startswith("SEAMLESS_")}
    env0.pop("PYTHONDONTWRITEBYTECODE", None)
    with tempfile.TemporaryDirectory() as tmp:
        plain, configured = os.path.join(tmp, "plain"), os.path.join(tmp, "configured")
        os.makedirs(plain)
        os.makedirs(configured)
        home = os.path.join(tmp, "home")
        os.makedirs(os.path.join(home, ".seamless"))
        with open(os.path.join(home, ".seamless", "clusters.yaml"), "w") as f:
            f.write(clusters_yaml(tmp))
        with open(os.path.join(configured, "seamless.yaml"), "w") as f:
            f.write(SEAMLESS_YAML)
        env = {**env0, "HOME": home, "XDG_CACHE_HOME": os.path.join(tmp, "xdg")}
        hit = [tool, "seq 1 10 | tac"]
        results = {}
        for label, cwd in (("zero_config", plain), ("configured", configured)):
            for _ in range(2):
                bench_run.timed(hit, cwd, env)
            results[label], _ = bench_run.median_of([hit] * REPEAT, cwd, env)
    out = {"bench": "config", "zero_config_hit_s": round(results["zero_config"], 4),
           "configured_hit_s": round(results["configured"], 4),
           "difference_ms": round((results["configured"] - results["zero_config"]) * 1000, 1)}
    print(json.dumps(out))


if __name__ == "__main__":
    main()
