#!/usr/bin/env python3
"""Archive: bytes through the function (target 0: server-side copy), multipart copy exercised.

    .venv/bin/python bench/archive.py [--quick]

Against a moto server on a free loopback port: a RAW object of 64 MB (8 MB with
``--quick``), its receipt in PROCESSED, then ``sluice.handlers.archive.process`` (what the
handler runs per message) with the handler's own settings and clients, twice:

* single: the default settings (``CopyObject`` below 5 GiB);
* multipart: ``multipart_threshold`` 16 MiB and ``part_size`` 8 MiB (5 MiB and 5 MiB with
  ``--quick``), so the same object goes through ``UploadPartCopy`` in parallel parts: the
  path a RAW object over 5 GiB takes, without uploading 5 GiB to an emulator.

Measured around each call: the object bytes the S3 client sent and received (bodies of
PutObject/UploadPart requests and GetObject responses other than the receipt's) and the
control bytes (every other body: XML, the receipt), counted with botocore event hooks;
every byte sent and received on the process's sockets (headers included); the S3
operations called; and the result (RAW gone, ARCHIVE holds the same size and ETag stamp).
A client-side copy (GET + PUT) would move twice the object size; the target is 0 object
bytes. The buckets are versioned, as ``modules/s3`` deploys them.
"""

from __future__ import annotations

import json
import os
import random
import socket
import time
from collections import Counter
from typing import Any

from benchlib import (
    MIB,
    emit,
    machine,
    moto_server,
    parse_args,
    peak_rss_bytes,
    print_table,
    use_endpoint,
    verdict,
)

RAW, PROCESSED, ARCHIVE = "bench-raw", "bench-processed", "bench-archive"
SEED = 5


class SocketBytes:
    """Every byte this process sends or receives on a socket (HTTP headers included)."""

    def __init__(self) -> None:
        self.total = 0
        counter = self
        original_sendall = socket.socket.sendall
        original_recv_into = socket.socket.recv_into

        def sendall(sock: socket.socket, data: Any, *args: Any) -> None:
            counter.total += memoryview(data).nbytes
            original_sendall(sock, data, *args)

        def recv_into(sock: socket.socket, buffer: Any, *args: Any) -> int:
            received = original_recv_into(sock, buffer, *args)
            counter.total += received
            return received

        socket.socket.sendall = sendall  # type: ignore[method-assign,assignment]
        socket.socket.recv_into = recv_into  # type: ignore[method-assign,assignment]


class PayloadCounter:
    """Body bytes in and out of one botocore client, by operation.

    Object bytes are what carries object content: PutObject/UploadPart request bodies and
    GetObject response bodies other than the receipt's. Everything else (XML of
    CompleteMultipartUpload, CopyObject results, the receipt) is control traffic.
    HeadObject has no body (its Content-Length is the object's).
    """

    OBJECT_UPLOADS = ("PutObject", "UploadPart")

    def __init__(self, client: Any, receipt_marker: str) -> None:
        self._receipt_marker = receipt_marker
        self.object_bytes = 0
        self.control_bytes = 0
        self.operations: Counter[str] = Counter()
        events = client.meta.events
        events.register("before-send.s3.*", self._before_send)
        events.register("after-call.s3.*", self._after_call)

    def reset(self) -> None:
        self.object_bytes = self.control_bytes = 0
        self.operations.clear()

    def _before_send(self, request: Any, event_name: str, **_: Any) -> None:
        length = int(request.headers.get("Content-Length", 0) or 0)
        if event_name.rsplit(".", 1)[-1] in self.OBJECT_UPLOADS:
            self.object_bytes += length
        else:
            self.control_bytes += length

    def _after_call(self, http_response: Any, model: Any, **_: Any) -> None:
        self.operations[model.name] += 1
        if model.name == "HeadObject":
            return
        length = int(http_response.headers.get("content-length", 0) or 0)
        if model.name == "GetObject" and self._receipt_marker not in http_response.url:
            self.object_bytes += length
        else:
            self.control_bytes += length


def receipt_body(key: str, etag: str, size: int) -> bytes:
    receipt = {
        "receipt_version": 1,
        "status": "processed",
        "kind": "data",
        "source": {"bucket": RAW, "key": key, "etag": etag, "version_id": None,
                   "size": size, "sequencer": None},
        "dataset": "retina",
        "outputs": [],
        "errors": [],
        "errors_truncated": False,
        "stats": {"records_total": 0, "records_valid": 0, "records_invalid": 0},
        "handler_version": "bench",
        "processed_at": "2024-01-01T00:00:00Z",
    }  # fmt: skip
    return json.dumps(receipt).encode()


def main() -> None:
    args = parse_args(__doc__ or "")
    size = (8 if args.quick else 64) * MIB
    part = (5 if args.quick else 8) * MIB
    threshold = (5 if args.quick else 16) * MIB
    payload = random.Random(SEED).randbytes(size)
    result: dict[str, Any] = {
        "bench": "archive",
        "quick": args.quick,
        "machine": machine(),
        "object_bytes": size,
        "cases": {},
    }
    rows = []
    with moto_server() as endpoint:
        use_endpoint(endpoint)
        # The tables are required settings since the deletion ledger (decision 30); a JSON
        # object never reaches them, so they need not exist in moto.
        os.environ.update(
            RAW_BUCKET=RAW,
            PROCESSED_BUCKET=PROCESSED,
            ARCHIVE_BUCKET=ARCHIVE,
            IMAGES_TABLE="bench-images",
            LABELS_TABLE="bench-labels",
        )
        import dataclasses

        import boto3

        from sluice.handlers import archive

        setup = boto3.client("s3")
        for bucket in (RAW, PROCESSED, ARCHIVE):
            setup.create_bucket(Bucket=bucket)
            # As deployed (modules/s3): every bucket is versioned.
            setup.put_bucket_versioning(
                Bucket=bucket, VersioningConfiguration={"Status": "Enabled"}
            )
        deps = archive.Dependencies.from_env(os.environ)
        s3 = deps.s3
        wire = SocketBytes()
        counter = PayloadCounter(s3, receipt_marker=f"/{PROCESSED}/receipts")
        cases = {
            "single": deps.settings,
            "multipart": dataclasses.replace(
                deps.settings, multipart_threshold=threshold, part_size=part
            ),
        }
        for name, settings in cases.items():
            key = f"retina/bench-{name}.json"
            etag = setup.put_object(Bucket=RAW, Key=key, Body=payload)["ETag"].strip('"')
            receipt_key = f"receipts/{key}.json"
            setup.put_object(Bucket=PROCESSED, Key=receipt_key, Body=receipt_body(key, etag, size))
            counter.reset()
            wire.total = 0
            started, cpu_started = time.perf_counter(), time.process_time()
            outcome = archive.process(
                dataclasses.replace(deps, settings=settings), PROCESSED, receipt_key
            )
            seconds = time.perf_counter() - started
            cpu_seconds = time.process_time() - cpu_started
            wire_bytes = wire.total
            archived = setup.head_object(Bucket=ARCHIVE, Key=f"data/{key}")
            raw_left = len(setup.list_object_versions(Bucket=RAW, Prefix=key).get("Versions", []))
            entry = {
                "outcome": outcome,
                "seconds": round(seconds, 3),
                "cpu_seconds": round(cpu_seconds, 4),
                "object_bytes": counter.object_bytes,
                "control_bytes": counter.control_bytes,
                "socket_bytes": wire_bytes,
                "operations": dict(sorted(counter.operations.items())),
                "archived_bytes": archived["ContentLength"],
                "stamp_ok": archived["Metadata"].get(archive.SOURCE_ETAG_METADATA) == etag,
                "raw_deleted": raw_left == 0,
            }
            entry["ok"] = bool(
                outcome == "archived"
                and entry["archived_bytes"] == size
                and entry["stamp_ok"]
                and entry["raw_deleted"]
            )
            result["cases"][name] = entry
            rows.append(
                [
                    name,
                    outcome,
                    f"{counter.object_bytes:,}",
                    f"{counter.control_bytes:,}",
                    f"{wire_bytes:,}",
                    f"{wire_bytes / size:.5f}",
                    ", ".join(f"{op} {n}" for op, n in sorted(counter.operations.items())),
                    f"{seconds:.2f} s",
                ]
            )

    print(f"object: {size:,} bytes; a client-side GET+PUT copy would move {2 * size:,}")
    print_table(
        "Bytes through the function per archived object",
        [
            "path",
            "outcome",
            "object B",
            "control B",
            "socket B",
            "socket / object",
            "S3 calls",
            "time",
        ],
        rows,
    )
    single, multipart = result["cases"]["single"], result["cases"]["multipart"]
    payload_zero = all(case["object_bytes"] == 0 for case in result["cases"].values())
    multipart_used = multipart["operations"].get("UploadPartCopy", 0) >= 2
    result["target_zero_bytes_met"] = payload_zero
    result["multipart_copy_exercised"] = multipart_used and multipart["ok"]
    # This process is the handler's (moto runs in its own): its peak is the function's.
    result["peak_rss"] = peak_rss_bytes()
    result["socket_bytes_max"] = max(single["socket_bytes"], multipart["socket_bytes"])
    print_table(
        "Targets",
        ["target", "measured", "verdict"],
        [
            ["object bytes through the function = 0 (single / multipart)",
             f"{single['object_bytes']} / {multipart['object_bytes']} B",
             verdict(payload_zero)],
            ["multipart copy path exercised and verified",
             f"UploadPartCopy x{multipart['operations'].get('UploadPartCopy', 0)},"
             f" ok={multipart['ok']}", verdict(result["multipart_copy_exercised"])],
        ],
    )  # fmt: skip
    emit(result)


if __name__ == "__main__":
    main()
