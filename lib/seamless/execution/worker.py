"""A spawn-pool worker: `python -m seamless.execution.worker FD`.

It reads jobs from the parent over the socket FD, runs each in a thread of its own
(the parent keeps at most THROTTLE here at once) and answers with the result buffer
or the error text. Transformations started by a job's code are offered to the parent
first (forward_to_parent); if the parent refuses, they run here.
"""

import itertools
import os
import socket
import sys
import threading

channel = None  # set in a worker: the connection to the parent
_replies = {}
_reply_ids = itertools.count(1)
_replies_lock = threading.Lock()


def forward_to_parent(job):
    """The result buffer, computed by the parent or another worker; None if refused."""
    from seamless.execution.job import TransformationFailure

    request = next(_reply_ids)
    waiter = threading.Event()
    with _replies_lock:
        _replies[request] = [waiter, None]
    buffers = job.needed_buffers()
    channel.send({"op": "submit", "id": request, "tf": job.tf, "transformation": job.transformation,
                  "buffers": list(buffers)}, list(buffers.values()))
    waiter.wait()
    with _replies_lock:
        _, (header, data) = _replies.pop(request)
    status = header.get("status")
    if status == "done":
        return data[0]
    if status == "error":
        raise TransformationFailure(header.get("error") or "failed in another worker")
    return None


def _run(job_id, transformation, buffers):
    from seamless.cache import cache
    from seamless.execution import runner
    from seamless.execution.job import TransformationFailure

    def get_buffer(cs):
        data = buffers.get(cs)
        return data if data is not None else cache.get_buffer(cs)

    try:
        result = runner.run(transformation, get_buffer)
        answer = ({"op": "result", "id": job_id, "ok": True, "usage": result.usage}, [result.data])
    except TransformationFailure as exc:
        answer = ({"op": "result", "id": job_id, "ok": False, "error": str(exc)}, [])
    except BaseException as exc:  # noqa: B036 - a worker must always answer
        answer = ({"op": "result", "id": job_id, "ok": False, "error": f"{type(exc).__name__}: {exc}"}, [])
    try:
        channel.send(*answer)
    except OSError:
        os._exit(0)  # the parent has gone
    except Exception as exc:  # an answer that cannot be sent: still an answer, or the parent waits forever
        channel.send({"op": "result", "id": job_id, "ok": False, "error": f"{type(exc).__name__}: {exc}"}, [])


def report_record(tf, inputs, result, data, scratch, usage):
    """A nested transformation ran here: the parent keeps it (memory and stores)."""
    header = {"op": "record", "tf": tf, "result": result, "scratch": scratch, "usage": usage,
              "buffers": list(inputs)}
    try:
        channel.send(header, [*inputs.values(), data])
    except OSError:
        pass


def main(fd):
    global channel
    from seamless.execution import wire

    # CPU-bound jobs share this interpreter: hand the GIL over less often than the
    # default 5 ms, which costs a worker running 3 such jobs ~15% of its time
    try:
        sys.setswitchinterval(float(os.environ.get("SEAMLESS_WORKER_SWITCH_INTERVAL", "0.05")))
    except ValueError:
        sys.setswitchinterval(0.05)
    sock = socket.socket(fileno=fd)
    channel = wire.Channel(sock, os.environ.get("SEAMLESS_POOL_DIR") or None)
    channel.send({"op": "ready"})
    while True:
        message = channel.receive()
        if message is None:
            os._exit(0)  # the parent has gone
        header, buffers = message
        op = header.get("op")
        if op == "run":
            args = (header["id"], header["transformation"], dict(zip(header["buffers"], buffers, strict=True)))
            threading.Thread(target=_run, args=args, daemon=True).start()
        elif op == "reply":
            with _replies_lock:
                slot = _replies.get(header["id"])
                if slot is not None:
                    slot[1] = (header, buffers)
                    slot[0].set()


if __name__ == "__main__":
    # run as the importable module, so that `channel` is seen by everyone who imports it
    from seamless.execution import worker

    worker.main(int(sys.argv[1]))
