"""The result database behind a seamless-db (or upstream seamless-database) server.

Same methods as ResultDB, so callers do not care whether the file is local or remote.
"""

import json

from seamless.store.httpclient import HttpClient
from seamless.store.sqlitedb import METADATA_CONFLICT, PROTOCOL, Conflict, DBError, Malformed, NotFound, ReadOnly

_ERRORS = {400: Malformed, 404: NotFound, 405: ReadOnly, 409: Conflict}


class HttpResultDB:
    def __init__(self, url, writable=False, token=None, token_file=None):
        self.client = HttpClient(url, token=token, token_file=token_file)
        self.url = self.client.url
        self.writable = writable

    def __repr__(self):
        return f"HttpResultDB({self.url!r}, writable={self.writable})"

    def healthcheck(self) -> bool:
        return self.client.healthcheck()

    def _request(self, method, request: dict):
        """The answer body as text; None for 404 on a read."""
        if method == "PUT" and not self.writable:
            raise ReadOnly(f"database {self.url} is configured read-only")
        status, _, body = self.client.call(method, "", json.dumps(request).encode(),
                                           {"Content-Type": "application/json"})
        text = body.decode(errors="replace")
        if status == 200:
            return text
        if status == 404 and method == "GET":
            return None
        if status == 401:
            raise DBError(f"database {self.url}: unauthorized (set SEAMLESS_TOKEN_FILE or the entry's token_file)")
        raise _ERRORS.get(status, DBError)(f"database {self.url} answered {status}: {text.strip()[:300]}")

    def _get_json(self, request):
        text = self._request("GET", request)
        return None if text is None else json.loads(text)

    def protocol(self):
        return self._get_json({"type": "protocol"})

    def check_protocol(self):
        found = self.protocol()
        if found != PROTOCOL:
            raise DBError(f"{self.url} speaks {found}, not the seamless database protocol {PROTOCOL}")

    def _get_hex(self, request):
        """A checksum answered as bare hex (upstream's transformation, expression)."""
        text = self._request("GET", request)
        return None if text is None else text.strip().strip('"')

    def get_transformation(self, tf):
        return self._get_hex({"type": "transformation", "checksum": tf})

    def set_transformation(self, tf, result):
        self._request("PUT", {"type": "transformation", "checksum": tf, "value": result})

    def get_rev_transformations(self, result):
        return self._get_json({"type": "rev_transformations", "checksum": result})

    def get_metadata(self, tf):
        return self._get_json({"type": "metadata", "checksum": tf})

    def set_metadata(self, tf, result, value):
        """Write-once: False if a different record is already stored."""
        try:
            self._request("PUT", {"type": "metadata", "checksum": tf, "result": result, "value": value})
        except Conflict as exc:
            if METADATA_CONFLICT in str(exc):
                return False
            raise
        return True

    def get_irreproducible(self, tf, result=None):
        request = {"type": "irreproducible", "checksum": tf}
        if result is not None:
            request["result"] = result
        return self._get_json(request)

    def set_irreproducible(self, tf, result):
        self._request("PUT", {"type": "irreproducible", "checksum": tf, "result": result})

    def get_bucket_probe(self, kind, label):
        return self._get_json({"type": "bucket_probe", "bucket_kind": kind, "label": label})

    def set_bucket_probe(self, kind, label, bucket_checksum, captured_at, freshness_tokens):
        self._request("PUT", {"type": "bucket_probe", "bucket_kind": kind, "label": label,
                              "bucket_checksum": bucket_checksum, "captured_at": captured_at,
                              "freshness_tokens": freshness_tokens})

    def get_buffer_info(self, cs):
        return self._get_json({"type": "buffer_info", "checksum": cs})

    def set_buffer_info(self, cs, value):
        self._request("PUT", {"type": "buffer_info", "checksum": cs, "value": value})

    # expression rows: what a fingertip of one result file follows back to its result index
    # (store/clients.py keep_index writes them, one request per entry)

    @staticmethod
    def _expression(cs, path, celltype, target_celltype):
        return {"type": "expression", "checksum": cs, "path": path, "celltype": celltype,
                "target_celltype": target_celltype}

    def get_expression(self, cs, path, celltype, target_celltype):
        return self._get_hex(self._expression(cs, path, celltype, target_celltype))

    def set_expression(self, cs, path, celltype, target_celltype, result):
        self._request("PUT", {**self._expression(cs, path, celltype, target_celltype), "value": result})

    def get_rev_expression(self, result):
        return self._get_json({"type": "rev_expression", "checksum": result})
