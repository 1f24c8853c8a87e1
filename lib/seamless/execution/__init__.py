"""The one execution path: every face (seamless-run, the Python API) and every backend.

    job.py       Job (what to compute) and Result (what came out); their errors
    compute.py   compute(job, place): cache lookup, run once, backend, execution record
    places.py    where results are looked up and kept (memory + stores; a StoreSet)
    latch.py     identical work runs once, in this process and across processes
    backends.py  backend_for(configuration, local=): in process, spawn pool, (remote)
    runner.py    the worker-side runner of any transformation dict
    python.py    Python code;  bash.py: bash (commands and bash transformers);
    jobdir.py    job directories and the processes that run in them
    fingertip.py rebuild a lost buffer from a transformation that made it
    pool.py, worker.py, wire.py   the spawn backend's worker processes

Importing the package imports nothing: seamless-run's cache hit loads only what it uses.
"""
