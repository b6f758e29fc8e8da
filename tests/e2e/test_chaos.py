"""Chaos end to end: 480 inputs and issue 10's mix through the local stack while a quarter
of the handler invocations fail, messages are delivered twice and late, and old events come
after new.

The stack is a ``chaos`` environment of its own (``tests/chaos/chaos.tfvars``: 2-3 s
timeouts, so 12-18 s visibility timeouts, and two receives before the dead-letter queue)
on its own emulator, applied by ``sluice up --var-file ... --environment chaos``
(``--emulator`` of the end-to-end target: moto or LocalStack).
Its runner preloads the fault harness (``tests/chaos/preload.py``): 25% of the invocations
of transform, archive and tag fail at a random AWS call (before it, or after it with the
response lost) or at their end, and one message in ten is sent again with a random delay.
Transform and archive each run two workers (a second worker process per function, as
Lambda runs invocations side by side).

Besides the bulk, the mix holds issue 10's cases (``tests/chaos/inputs.py``): keys
uploaded twice far apart and keys sent in three or four versions back to back (a status
flip among them), whose older versions' events are sent again, late, once the newest is
archived; names that collide unless derived names keep the whole key (``a.JPG``/``a.jpg``,
``x.png``/``x.jpg``/a corrupt ``x.gif``, a 1,019-byte key whose names are hashed and the
short key ``_long/<sha256>`` spelling that hash); poison data files (a 5,000- and a
100,000-digit integer, lone surrogates in both formats, 1,700 ``{}`` records); and keys the
harness deletes from RAW at a known step of their transform (before it reads them, after,
and once the receipt is written).

Faults stay on to the end, redrive rounds included: the claim is that the pipeline
converges under continuing faults, not that it does once they stop. Each round drains
the queues, then moves the dead-letter queue back (``sluice.ops.redrive``, as ``sluice
redrive`` does), until the dead-letter queue stays empty. A dead-lettered ``s3:TestEvent``
(one batch-mate of a twice-faulted batch) is deleted by redrive, which still reports ok.

The run must pass on a busy machine (another process spinning on a core): every wait is
a poll with a deadline sized for that, and ``sluice up`` returns only once the runner has
consumed the test events that applying the notification configuration queued, so they
never share a batch with the inputs (``sluice.local.stack.updown``).

Afterwards every key has exactly one receipt, for its newest version, with the expected
status (a key deleted before its receipt has none), every output exists exactly once
under a name no other input's could take, the archive holds each newest version once and
every older version under ``superseded/<its version id>/``, the version ledger records
exactly the older versions (superseded) and the deleted ones, RAW is empty, label counts
and each image's labels equal the ground truth (the offline labeler run here on the same
bytes), the dead-letter queue is empty and ``sluice audit`` (ownership checks included)
is clean with a ledger that counts what was sent. Every expectation is computed from what
was sent. The ledger is printed (``pytest -s``).
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from sluice.keys import (
    ARCHIVE_SUPERSEDED_PREFIX,
    RECEIPTS_PREFIX,
    receipt_key,
    superseded_archive_key,
)
from sluice.label_items import label_counts
from sluice.local import awsenv
from sluice.local.lambdas.wiring import discover
from sluice.local.lambdas.worker import function_process_env, worker_command
from sluice.local.stack.state import StateDir
from sluice.ops.audit import LEDGER_PREFIXES, pending_messages, wait_until_drained
from sluice.ops.environment import select_environment
from sluice.ops.objects import list_objects, read_version_records
from sluice.ops.queues import queue_depth
from sluice.ops.redrive import redrive
from sluice.receipts import MAX_RECEIPT_ERRORS
from sluice.thumbnails import OUTPUT_FORMATS
from tests.chaos import faults
from tests.chaos.inputs import Corpus, Input, build
from tests.e2e.conftest import (
    ROOT,
    UP_TIMEOUT_SECONDS,
    Stack,
    _run_local,
    emulator_args,
    stack_ports,
)
from tests.s3events import s3_event, s3_record

ENVIRONMENT = "chaos"
TFVARS = ROOT / "tests" / "chaos" / "chaos.tfvars"
INPUTS = 480
FAULT_RATE = 0.25
DUPLICATE_RATE = 0.10
SEED = 7
DRAIN_TIMEOUT_SECONDS = 600  # a deadline, polled: generous for a loaded machine
MAX_REDRIVE_ROUNDS = 6
FAULTED_FUNCTIONS = ("transform", "archive", "tag")
SECOND_WORKERS = ("transform", "archive")
"""Functions that get a second worker process: two invocations of one run at once."""
STOP_GRACE_SECONDS = 30

pytestmark = pytest.mark.e2e


def _md5(data: bytes) -> str:
    return hashlib.md5(data, usedforsecurity=False).hexdigest()


@pytest.fixture(scope="module")
def corpus() -> Corpus:
    return build(INPUTS)


@pytest.fixture(scope="module")
def chaos_stack(
    tmp_path_factory: pytest.TempPathFactory, corpus: Corpus
) -> Iterator[tuple[Stack, Path]]:
    """An emulator with the chaos environment applied and a runner with the harness, plus
    a second worker for each of ``SECOND_WORKERS``."""
    state_dir = tmp_path_factory.mktemp("chaos-stack")
    fault_log = state_dir / "faults.jsonl"
    delete_plan = state_dir / "deletes.json"
    delete_plan.write_text(json.dumps(corpus.deletes), encoding="utf-8")
    ports = stack_ports()
    port = int(ports[1])
    local = ["--state-dir", str(state_dir)]
    harness = {
        "SLUICE_RUNNER_PRELOAD": "tests.chaos.preload",
        faults.ENV_RATE: str(FAULT_RATE),
        faults.ENV_SEED: str(SEED),
        faults.ENV_FUNCTIONS: ",".join(FAULTED_FUNCTIONS),
        faults.ENV_DUPLICATE_RATE: str(DUPLICATE_RATE),
        faults.ENV_LOG: str(fault_log),
        faults.ENV_DELETE_PLAN: str(delete_plan),
        "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
    }
    second_workers: list[subprocess.Popen[bytes]] = []
    try:
        # `up` passes its environment to the runner, which passes SLUICE_RUNNER_* on.
        with pytest.MonkeyPatch.context() as patch:
            for name, value in harness.items():
                patch.setenv(name, value)
            setup_started = time.monotonic()
            up = _run_local(
                [
                    "up",
                    "--no-samples",
                    *ports,
                    *emulator_args(),
                    *local,
                    "--var-file",
                    str(TFVARS),
                    "--environment",
                    ENVIRONMENT,
                ],
                UP_TIMEOUT_SECONDS,
            )
        if up.returncode != 0:
            pytest.fail(f"sluice up failed:\n{up.stdout[-3000:]}\n{up.stderr[-3000:]}")
        print(f"chaos setup: sluice up took {time.monotonic() - setup_started:.0f} s")
        state = StateDir(ROOT, state_dir)
        outputs = json.loads(state.outputs.read_text())
        stack = Stack(
            endpoint_url=awsenv.endpoint_for(port),
            environment=select_environment(outputs, ENVIRONMENT, str(state.outputs)),
            outputs_file=state.outputs,
            root=ROOT,
        )
        second_workers = _start_second_workers(stack, {**os.environ, **harness}, state_dir)
        yield stack, fault_log
    finally:
        _stop(second_workers)
        down = _run_local(["down", *local], 120)
        print(down.stdout, down.stderr, sep="\n")


def _start_second_workers(
    stack: Stack, base_env: dict[str, str], log_dir: Path
) -> list[subprocess.Popen[bytes]]:
    """One more worker per function of ``SECOND_WORKERS``, started as the runner starts
    its own (sluice.local.lambdas.supervisor: same command, same environment); each dies with
    this process (``--parent-pid``) if the test is killed."""
    workers = []
    for function in SECOND_WORKERS:
        name = stack.environment.function_names[function]
        (wiring,) = discover(stack.client("lambda"), stack.client("sqs"), function_name=name)
        with (log_dir / f"{name}-second.log").open("ab") as log:
            workers.append(
                subprocess.Popen(
                    worker_command(stack.endpoint_url, name, os.getpid()),
                    env=function_process_env(wiring, stack.endpoint_url, base_env),
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                )
            )
    return workers


def _stop(workers: Sequence[subprocess.Popen[bytes]]) -> None:
    """SIGTERM (the batch in progress finishes), then wait; kill only past the grace."""
    for worker in workers:
        if worker.poll() is None:
            worker.terminate()
    for worker in workers:
        try:
            worker.wait(timeout=STOP_GRACE_SECONDS)
        except subprocess.TimeoutExpired:
            worker.kill()
            worker.wait()


@dataclass
class ChaosRun:
    stack: Stack
    corpus: Corpus
    fault_log: Path
    seconds: float = 0.0
    dead_lettered: list[int] = field(default_factory=list)
    """Dead-letter queue depth before each redrive round."""
    redriven: int = 0
    discarded: int = 0
    """Dead-lettered s3:TestEvents that redrive deleted."""
    receipts: dict[str, dict[str, Any]] = field(default_factory=dict)
    sent: dict[str, list[tuple[str, str]]] = field(default_factory=dict)
    """(version id, ETag) of every PUT of each key, in the order sent."""
    records: list[dict[str, Any]] = field(default_factory=list)
    """The version ledger (``versions/``)."""

    def function_env(self, function: str) -> dict[str, str]:
        config = self.stack.client("lambda").get_function_configuration(
            FunctionName=self.stack.environment.function_names[function]
        )
        variables: dict[str, str] = config["Environment"]["Variables"]
        return variables


def _upload(run: ChaosRun, jobs: Sequence[Sequence[Input]]) -> None:
    """Send each job's versions one after the other (each PUT completes before the next
    starts, so the last is the newest), the jobs eight at a time."""
    s3 = run.stack.client("s3")
    bucket = run.stack.environment.raw_bucket

    def send(job: Sequence[Input]) -> None:
        for item in job:
            put = s3.put_object(Bucket=bucket, Key=item.key, Body=item.data)
            etag = put["ETag"].strip('"')
            assert etag == _md5(item.data), item.key
            run.sent.setdefault(item.key, []).append((put["VersionId"], etag))

    with ThreadPoolExecutor(max_workers=8) as pool:
        list(pool.map(send, jobs))


def _drain(stack: Stack) -> None:
    sqs = stack.client("sqs")
    drained = wait_until_drained(
        lambda: pending_messages(sqs, stack.environment),
        timeout=DRAIN_TIMEOUT_SECONDS,
        interval=1.0,
        stable_polls=3,
    )
    assert drained, f"the queues did not drain within {DRAIN_TIMEOUT_SECONDS} s"


def _late_and_duplicate_events(run: ChaosRun) -> None:
    """For each key sent in several versions: every version's event again after the
    newest was archived (the older ones out of order, the newest a duplicate); and for
    each deleted key, its event again after the delete."""
    env = run.stack.environment
    sqs = run.stack.client("sqs")
    late = [item for versions in run.corpus.versions.values() for item in versions]
    late += [item for key, item in run.corpus.gone.items()]
    for item in late:
        record = s3_record(env.raw_bucket, item.key, etag=_md5(item.data), size=len(item.data))
        sqs.send_message(
            QueueUrl=env.queue_urls["transform"], MessageBody=json.dumps(s3_event(record))
        )


@pytest.fixture(scope="module")
def run(chaos_stack: tuple[Stack, Path]) -> ChaosRun:
    stack, fault_log = chaos_stack
    corpus = build(INPUTS)
    result = ChaosRun(stack, corpus, fault_log)
    sqs = stack.client("sqs")
    assert pending_messages(sqs, stack.environment) == 0, "up returned with messages queued"
    started = time.monotonic()
    apart = [key for key in corpus.versions if key not in corpus.bursts]
    once = [item for key, item in corpus.inputs.items() if key not in corpus.versions]
    once += corpus.gone.values()
    middle = len(once) // 2
    # The first versions of keys sent twice first, the versions that replace them last;
    # the bursts in the middle of the rest, while the workers are busy.
    _upload(result, [corpus.versions[key][:1] for key in apart])
    _upload(
        result,
        [[item] for item in once[:middle]]
        + [corpus.versions[key] for key in sorted(corpus.bursts)]
        + [[item] for item in once[middle:]],
    )
    _upload(result, [corpus.versions[key][1:] for key in apart])
    _drain(stack)
    _late_and_duplicate_events(result)
    for _ in range(MAX_REDRIVE_ROUNDS):
        _drain(stack)
        depth = queue_depth(sqs, "dlq", stack.environment.dead_letter_queue_url).total
        if depth == 0:
            break
        result.dead_lettered.append(depth)
        report = redrive(sqs, stack.environment)
        assert report.ok, report
        result.redriven += report.moved
        result.discarded += len(report.discarded)
    result.seconds = time.monotonic() - started
    s3 = stack.client("s3")
    for item in list_objects(s3, stack.environment.processed_bucket, RECEIPTS_PREFIX):
        body = s3.get_object(Bucket=stack.environment.processed_bucket, Key=item.key)["Body"]
        receipt = json.loads(body.read())
        result.receipts[receipt["source"]["key"]] = receipt
    for record in read_version_records(s3, stack.environment.processed_bucket):
        assert record.body is not None, record.problem
        result.records.append(record.body)
    print(render_ledger(result))
    return result


def render_ledger(run: ChaosRun) -> str:
    log = faults.read_log(run.fault_log)
    lines = [f"chaos ledger ({run.seconds:.0f} s from first upload to converged)"]
    statuses = Counter(receipt["status"] for receipt in run.receipts.values())
    lines.append(
        f"  keys {len(run.corpus.inputs) + len(run.corpus.gone)}, uploads"
        f" {run.corpus.uploads()} ({len(run.corpus.versions)} keys sent more than once,"
        f" {len(run.corpus.bursts)} of them back to back); receipts {sum(statuses.values())}: "
        + ", ".join(f"{status} {count}" for status, count in sorted(statuses.items()))
    )
    ledger = Counter(record["status"] for record in run.records)
    deletes = [entry for entry in log if entry["function"] == faults.DELETE_LOG_FUNCTION]
    lines.append(
        f"  version ledger: {dict(sorted(ledger.items()))}; RAW deletes by the harness"
        f" {len(deletes)} ({dict(sorted(Counter(e['step'] for e in deletes).items()))})"
    )
    for function in FAULTED_FUNCTIONS:
        entries = [entry for entry in log if entry["function"] == function]
        counts = [count for entry in entries for count in entry["receive_counts"]]
        lines.append(
            f"  {function:9s} invocations {len(entries)}, faults injected"
            f" {sum(1 for e in entries if e['fired'])}, messages delivered {len(counts)},"
            f" retries {sum(1 for count in counts if count > 1)}, failed deliveries"
            f" {sum(len(e['failed']) for e in entries)}, copies sent"
            f" {sum(e['copies_sent'] for e in entries)}"
        )
    lines.append(
        f"  dead-lettered {sum(run.dead_lettered)} (per round: {run.dead_lettered or [0]}),"
        f" redriven {run.redriven}, s3:TestEvents deleted {run.discarded},"
        f" redrive rounds {len(run.dead_lettered)}"
    )
    return "\n".join(lines)


# --- afterwards ----------------------------------------------------------------------------


def test_faults_duplicates_and_retries_really_happened(run: ChaosRun) -> None:
    log = [e for e in faults.read_log(run.fault_log) if e["function"] in FAULTED_FUNCTIONS]
    assert log, "the harness logged no invocation: was it preloaded?"
    fired = sum(1 for entry in log if entry["fired"])
    # 25% of invocations, with a wide margin: the draw is random but seeded per worker.
    assert 0.15 * len(log) <= fired <= 0.35 * len(log), (fired, len(log))
    assert sum(entry["copies_sent"] for entry in log) > 0
    assert any(count > 1 for entry in log for count in entry["receive_counts"])
    assert {e["function"] for e in log if e["fired"]} == set(FAULTED_FUNCTIONS)


def test_two_workers_served_transform_and_archive(run: ChaosRun) -> None:
    log = faults.read_log(run.fault_log)
    for function in SECOND_WORKERS:
        assert len({e["pid"] for e in log if e["function"] == function}) >= 2, function


def test_the_harness_deleted_each_planned_key_at_its_step(run: ChaosRun) -> None:
    log = faults.read_log(run.fault_log)
    done = {(e["key"], e["step"]) for e in log if e["function"] == faults.DELETE_LOG_FUNCTION}
    assert done == set(run.corpus.deletes.items())


def test_every_key_has_exactly_one_receipt_for_its_newest_version(run: ChaosRun) -> None:
    """Keys deleted before their receipt have none; every other key's receipt describes
    the last version sent, with the outcome its content calls for."""
    assert set(run.receipts) == set(run.corpus.inputs)
    for key, item in run.corpus.inputs.items():
        receipt = run.receipts[key]
        assert (receipt["status"], receipt["kind"]) == (item.status, item.kind), key
        newest_version, newest_etag = run.sent[key][-1]
        assert receipt["source"]["etag"] == newest_etag == _md5(item.data), key
        assert receipt["source"]["version_id"] == newest_version, key
        codes = [error["code"] for error in receipt["errors"]]
        if item.reason is not None:
            assert set(codes) == {item.reason}, key
            assert item.status == "processed" or len(codes) == 1, key
        if item.status == "processed" and item.kind == "data":
            assert receipt["stats"]["records_invalid"] == item.invalid_records, key
        if item.invalid_records > MAX_RECEIPT_ERRORS:  # at least one error per record
            assert receipt["errors_truncated"] and len(codes) == MAX_RECEIPT_ERRORS, key
    processed = run.stack.environment.processed_bucket
    listed = [o.key for o in list_objects(run.stack.client("s3"), processed, RECEIPTS_PREFIX)]
    assert sorted(listed) == sorted(receipt_key(key) for key in run.corpus.inputs)


def test_every_output_exists_exactly_once_under_a_name_only_its_input_has(
    run: ChaosRun,
) -> None:
    transform = run.function_env("transform")
    sizes = tuple(int(size) for size in transform.get("THUMBNAIL_SIZES", "128,512").split(","))
    extension = OUTPUT_FORMATS[transform.get("THUMBNAIL_FORMAT", "JPEG")].extension
    s3 = run.stack.client("s3")
    stored = {
        o.key: o.size
        for o in list_objects(s3, run.stack.environment.processed_bucket)
        if not o.key.startswith(LEDGER_PREFIXES)
    }
    owner: dict[str, str] = {}
    for key, item in run.corpus.inputs.items():
        wanted = item.output_keys(sizes, extension)
        for name in (*wanted, receipt_key(key)):  # one owner per name, colliding keys too
            assert owner.setdefault(name, key) == key, (name, owner[name], key)
        listed = {output["key"]: output["size"] for output in run.receipts[key]["outputs"]}
        assert set(listed) == wanted, key
        for output_key, size in listed.items():
            assert stored.get(output_key) == size, output_key
    # Nothing else: no output of a deleted key, of an older version, or of a namesake.
    assert set(stored) == set(owner) - {receipt_key(key) for key in run.corpus.inputs}


def test_the_archive_holds_each_newest_version_once_and_every_older_one_by_version(
    run: ChaosRun,
) -> None:
    env = run.stack.environment
    s3 = run.stack.client("s3")
    assert [o.key for o in list_objects(s3, env.raw_bucket)] == []
    archived = {}
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=env.archive_bucket):
        for entry in page.get("Contents", []):
            archived[entry["Key"]] = entry["ETag"].strip('"')
    expected = {item.archive_key(): _md5(item.data) for item in run.corpus.inputs.values()}
    assert len(expected) == len(run.corpus.inputs), "two inputs share an archive name"
    current = {k: v for k, v in archived.items() if not k.startswith(ARCHIVE_SUPERSEDED_PREFIX)}
    assert current == expected
    superseded = {k: v for k, v in archived.items() if k.startswith(ARCHIVE_SUPERSEDED_PREFIX)}
    assert superseded == {
        superseded_archive_key(key, version): etag
        for key in run.corpus.versions
        for version, etag in run.sent[key][:-1]
    }


def test_the_version_ledger_records_every_older_version_and_every_deleted_one(
    run: ChaosRun,
) -> None:
    recorded = sorted(
        (r["status"], r["source"]["key"], r["source"]["etag"], r["archive_key"])
        for r in run.records
    )
    older = [
        ("superseded", key, etag, superseded_archive_key(key, version))
        for key in run.corpus.versions
        for version, etag in run.sent[key][:-1]
    ]
    deleted = [("deleted", key, _md5(item.data), None) for key, item in run.corpus.gone.items()]
    assert recorded == sorted(older + deleted)
    by_version = {r["source"]["version_id"] for r in run.records if r["status"] == "superseded"}
    assert by_version == {
        version for key in run.corpus.versions for version, _ in run.sent[key][:-1]
    }


def test_label_counts_and_image_labels_equal_the_ground_truth(run: ChaosRun) -> None:
    tag = run.function_env("tag")
    min_confidence = float(tag.get("LABEL_MIN_CONFIDENCE", "80"))
    max_labels = int(tag.get("LABEL_MAX_LABELS", "10"))
    env = run.stack.environment
    dynamodb = run.stack.client("dynamodb")
    assert env.labels_table
    truth = run.corpus.label_counts(min_confidence, max_labels)
    assert truth, "the ground truth has no label: the check would be empty"
    assert dict(label_counts(dynamodb, env.labels_table)) == dict(truth)
    stored: dict[str, list[str]] = {}
    for page in dynamodb.get_paginator("scan").paginate(TableName=env.images_table):
        for item in page["Items"]:
            stored[item["archive_key"]["S"]] = [v["S"] for v in item.get("labels", {}).get("L", [])]
            assert "tag_lease_owner" not in item, item["archive_key"]
    expected = {
        item.archive_key(): item.labels(min_confidence, max_labels)
        for item in run.corpus.inputs.values()
        if item.status == "processed" and item.kind == "image"
    }
    assert {key: sorted(labels) for key, labels in stored.items()} == {
        key: sorted(labels) for key, labels in expected.items()
    }


def test_the_dead_letter_queue_is_empty_after_redrive(run: ChaosRun) -> None:
    env = run.stack.environment
    sqs = run.stack.client("sqs")
    assert queue_depth(sqs, "dlq", env.dead_letter_queue_url).total == 0
    assert pending_messages(sqs, env) == 0
    if run.dead_lettered:
        assert run.redriven + run.discarded >= run.dead_lettered[0]


def test_sluice_audit_is_clean_and_its_ledger_counts_what_was_sent(run: ChaosRun) -> None:
    stack = run.stack
    audit = subprocess.run(
        [
            sys.executable,
            "-m",
            "sluice.cli",
            "audit",
            "--wait",
            "60",
            "--output",
            "json",
            "--environment",
            ENVIRONMENT,
            "--endpoint-url",
            stack.endpoint_url,
            "--outputs-file",
            str(stack.outputs_file),
        ],
        env=stack.env(),
        cwd=stack.root,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert audit.returncode == 0, audit.stdout + audit.stderr
    document = json.loads(audit.stdout)
    assert document["clean"] and document["discrepancies"] == [], document
    statuses = Counter(item.status for item in run.corpus.inputs.values())
    older = sum(len(versions) - 1 for versions in run.corpus.versions.values())
    assert document["ledger"] == {
        "inputs_seen": len(run.corpus.inputs),
        "in_raw": 0,
        "receipts_processed": statuses["processed"],
        "receipts_rejected": statuses["rejected"],
        "archived": len(run.corpus.inputs) + older,
        "versions_superseded": older,
        "versions_deleted": len(run.corpus.gone),
        "dead_lettered": 0,
    }
