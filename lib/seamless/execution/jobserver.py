"""The job server backend (execution: remote, remote: jobserver).

ensure() finds the configuration's seamless-jobserver running, or launches it (with the
hashserver and database it reads and writes: seamless.session.jobserver_for). run(job)
sends the job description upstream's clients send, after the buffers it needs are in the
hashserver (a command's inputs are uploaded by its face first), waits for the answer
(the connection has no read timeout, only TCP keepalive: a job of hours is fine, a dead
server is noticed), and returns the result checksum with the usage measured where the
job ran; the Python API's results are read back from the hashserver. A Ctrl-C while
waiting cancels the job on the server.
"""

import json
import time

from seamless.execution.job import JobError, Result, TransformationFailure
from seamless.execution.places import stores_in_force

CANCELED = "Transformation was canceled"
RECHECK_AFTER = 2.0  # seconds without an answer after which the server is checked before use


class Jobserver:
    mode = "remote"

    def __init__(self, configuration):
        self.configuration = configuration
        self.client = None
        self.url = None
        self.answered = 0.0  # when it last answered

    def ensure(self):
        if self.client is not None:
            if time.monotonic() - self.answered < RECHECK_AFTER or self.client.healthcheck():
                return
            self.client = None  # it went away while idle: find it again, or launch a new one
        from seamless.session import jobserver_for
        from seamless.store.httpclient import HttpClient

        connection = jobserver_for(self.configuration)
        self.url = connection["url"]
        client = HttpClient(self.url, token_file=connection.get("token_file"))
        client.read_timeout, client.keepalive = None, True  # the answer comes when the job is done
        self.client, self.answered = client, time.monotonic()

    def run(self, job) -> Result:
        self.ensure()
        stores = job.options.get("stores") or stores_in_force()
        command = job.command
        if not command:  # the Python API's buffers are in memory: the server reads them from the hashserver
            for cs, data in {**job.buffers, **job.needed_buffers()}.items():
                stores.put_buffer(data, cs)
        transformation = {k: v for k, v in job.transformation.items() if k not in ("__meta__", "__env__")}
        dunder = {k: v for k, v in job.transformation.items() if k in ("__meta__", "__env__")}
        body = json.dumps({"transformation_dict": transformation, "tf_checksum": job.tf, "tf_dunder": dunder,
                           "scratch": job.scratch, "strict_dunder": False, "record": False}).encode()
        if job.notify is not None:
            job.notify(f"running on the job server {self.url}: waiting for the result")
        try:
            # a GET with a body, as upstream's clients send it: upstream's job server takes only that
            status, headers, answer = self.client.call("GET", "/run-transformation", body,
                                                       {"Content-Type": "application/json"})
        except KeyboardInterrupt:
            self._cancel(job.tf)
            raise
        except ConnectionError as exc:
            url, self.client = self.url, None  # the next job finds it again, or launches a new one
            raise TransformationFailure(f"the job server {url} went away or cannot be reached ({exc}); "
                                        "nothing was kept (the next run starts it again)") from None
        self.answered = time.monotonic()
        text = answer.decode(errors="replace")
        code = headers.get("x-seamless-exit-code", "")
        if status == 500 and code.isdigit():  # a command that failed there: as if it failed here
            message, _, tail = text.partition("\n")
            raise JobError(message, int(code), tail.encode(), shown=False)
        if status != 200:
            raise TransformationFailure(f"the job server {self.url} answered {status}: {text.strip()[:2000]}")
        if text.strip() == CANCELED:  # by seamless-cancel: a command ends as a canceled local one does (130)
            if command:
                from seamless.execution import jobdir

                raise JobError(jobdir.CANCELED, jobdir.CANCEL_EXIT, shown=False)
            raise TransformationFailure(CANCELED)
        try:
            outcome = json.loads(text)
            checksum = outcome["result_checksum"]
            runtime = outcome.get("record_runtime") or {}
        except (ValueError, KeyError, TypeError):
            raise TransformationFailure(f"the job server {self.url} gave an unexpected answer: {text[:200]!r}") from None
        if outcome.get("stderr") and job.echo is not None:
            job.echo(outcome["stderr"].encode())
        usage = {"wall_time_seconds": runtime.get("wall_time_seconds"),
                 "cpu_time_user_seconds": runtime.get("cpu_user_seconds"),
                 "cpu_time_system_seconds": runtime.get("cpu_system_seconds"),
                 "memory_peak_bytes": runtime.get("memory_peak_bytes"), "remote_target": self.url,
                 "pid": runtime.get("pid"), "hostname": runtime.get("hostname")}
        data = None
        if not job.scratch or not command:
            data = _arrived(stores, checksum, fetch=not command)
            if data is None:
                raise TransformationFailure(f"the job server {self.url} computed {checksum}, but the hashserver "
                                            "does not have it")
        return Result(checksum, data if not command else None, usage, self.mode)

    def cancel(self, job) -> bool:
        return self.client is not None and self._cancel(job.tf)

    def _cancel(self, tf) -> bool:
        try:
            status, _, answer = self.client.call("POST", f"/cancel-transformation/{tf}")
            return status == 200 and json.loads(answer).get("canceled") is True
        except (OSError, ValueError):
            return False


def _arrived(stores, checksum, fetch, patience=30.0):
    """The result buffer (or True, without fetch) once the hashserver has it: upstream's
    job server may answer before its worker's upload is done."""
    deadline, pause = time.monotonic() + patience, 0.02
    while True:
        found = stores.get_buffer(checksum) if fetch else (stores.has_buffer(checksum) or None)
        if found is not None or time.monotonic() > deadline:
            return found
        time.sleep(pause)
        pause = min(pause * 2, 1.0)
