"""Chaos end to end: 520 inputs through the local stack while a quarter of the handler
invocations fail, messages are delivered twice and late, and old events come after new.

The stack is a ``chaos`` environment of its own (``tests/chaos/chaos.tfvars``: 2-3 s
timeouts, so 12-18 s visibility timeouts, and two receives before the dead-letter queue)
on its own emulator, applied by ``sluice up --var-file ... --environment chaos``
(``--emulator`` of the end-to-end target; not run on LocalStack: ``LOCALSTACK_DISCREPANCY``).
Its runner preloads the fault harness (``tests/chaos/preload.py``): 25% of the invocations
of transform, archive and tag fail at a random AWS call (before it, or after it with the
response lost) or at their end, and one message in ten is sent again with a random delay.
Some keys are uploaded twice, and the first version's event is sent again once the second
is archived.

Faults stay on to the end, redrive rounds included: the claim is that the pipeline
converges under continuing faults, not that it does once they stop. Each round drains
the queues, then moves the dead-letter queue back (``sluice.ops.redrive``, as ``sluice
redrive`` does), until the dead-letter queue stays empty. A dead-lettered ``s3:TestEvent``
(one batch-mate of a twice-faulted batch) is deleted by redrive, which still reports ok.

The run must pass on a busy machine (another process spinning on a core): every wait is
a poll with a deadline sized for that, and ``sluice up`` returns only once the runner has
consumed the test events that applying the notification configuration queued, so they
never share a batch with the inputs (``sluice.local.stack``).

Afterwards every input has exactly one receipt with the expected status, every output
exists exactly once, the archive holds each input once, RAW is empty, label counts and
each image's labels equal the ground truth (the offline labeler run here on the same
bytes), the dead-letter queue is empty and ``sluice audit`` is clean. The ledger is printed
(``pytest -s``).
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from sluice.images import OUTPUT_FORMATS
from sluice.keys import ARCHIVE_SUPERSEDED_PREFIX, RECEIPTS_PREFIX, receipt_key
from sluice.labels import label_counts
from sluice.local import awsenv
from sluice.local.state import StateDir
from sluice.ops.audit import LEDGER_PREFIXES, pending_messages, wait_until_drained
from sluice.ops.environment import select_environment
from sluice.ops.objects import list_objects
from sluice.ops.queues import queue_depth
from sluice.ops.redrive import redrive
from tests.chaos import faults
from tests.chaos.inputs import Corpus, build
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
INPUTS = 520
FAULT_RATE = 0.25
DUPLICATE_RATE = 0.10
SEED = 7
DRAIN_TIMEOUT_SECONDS = 600  # a deadline, polled: generous for a loaded machine
MAX_REDRIVE_ROUNDS = 6
FAULTED_FUNCTIONS = ("transform", "archive", "tag")
LOCALSTACK_DISCREPANCY = (
    "on LocalStack 4.14 this run ends with 3 of 520 inputs' thumbnails missing (keys with"
    " non-ASCII names, e.g. photos/名前 0387.jpg: the receipt lists thumbnails/64/... and"
    " PROCESSED does not hold it; sluice audit reports them), while moto converges with the"
    " same seed: not yet diagnosed (docs/localstack.md, 'Not run on LocalStack')"
)

pytestmark = [pytest.mark.e2e, pytest.mark.not_on_localstack(LOCALSTACK_DISCREPANCY)]


def _md5(data: bytes) -> str:
    return hashlib.md5(data, usedforsecurity=False).hexdigest()


@pytest.fixture(scope="module")
def chaos_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Stack, Path]]:
    """An emulator with the chaos environment applied and a runner with the harness."""
    state_dir = tmp_path_factory.mktemp("chaos-stack")
    fault_log = state_dir / "faults.jsonl"
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
        "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
    }
    try:
        # `up` passes its environment to the runner, which passes SLUICE_RUNNER_* on.
        with pytest.MonkeyPatch.context() as patch:
            for name, value in harness.items():
                patch.setenv(name, value)
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
        state = StateDir(ROOT, state_dir)
        outputs = json.loads(state.outputs.read_text())
        yield (
            Stack(
                endpoint_url=awsenv.endpoint_for(port),
                environment=select_environment(outputs, ENVIRONMENT, str(state.outputs)),
                outputs_file=state.outputs,
                root=ROOT,
            ),
            fault_log,
        )
    finally:
        down = _run_local(["down", *local], 120)
        print(down.stdout, down.stderr, sep="\n")


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

    def function_env(self, function: str) -> dict[str, str]:
        config = self.stack.client("lambda").get_function_configuration(
            FunctionName=self.stack.environment.function_names[function]
        )
        variables: dict[str, str] = config["Environment"]["Variables"]
        return variables


def _upload(stack: Stack, items: list[tuple[str, bytes]]) -> None:
    s3 = stack.client("s3")
    bucket = stack.environment.raw_bucket
    with ThreadPoolExecutor(max_workers=8) as pool:
        list(pool.map(lambda kv: s3.put_object(Bucket=bucket, Key=kv[0], Body=kv[1]), items))


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
    """For each key uploaded twice: the first version's event after the second was
    archived (out of order), and the second's again (duplicate)."""
    env = run.stack.environment
    sqs = run.stack.client("sqs")
    for key, first in run.corpus.superseded.items():
        final = run.corpus.inputs[key].data
        for data in (first, final):
            record = s3_record(env.raw_bucket, key, etag=_md5(data), size=len(data))
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
    # The superseded versions first, the versions that replace them last.
    _upload(stack, list(corpus.superseded.items()))
    _upload(
        stack, [(k, item.data) for k, item in corpus.inputs.items() if k not in corpus.superseded]
    )
    _upload(stack, [(k, corpus.inputs[k].data) for k in corpus.superseded])
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
    print(render_ledger(result))
    return result


def render_ledger(run: ChaosRun) -> str:
    log = faults.read_log(run.fault_log)
    lines = [f"chaos ledger ({run.seconds:.0f} s from first upload to converged)"]
    statuses = Counter(receipt["status"] for receipt in run.receipts.values())
    lines.append(
        f"  inputs {len(run.corpus.inputs)} (+{len(run.corpus.superseded)} superseded uploads)"
        f"; receipts {sum(statuses.values())}: "
        + ", ".join(f"{status} {count}" for status, count in sorted(statuses.items()))
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


def test_every_input_has_exactly_one_receipt_with_its_expected_outcome(run: ChaosRun) -> None:
    assert set(run.receipts) == set(run.corpus.inputs)
    for key, item in run.corpus.inputs.items():
        receipt = run.receipts[key]
        assert (receipt["status"], receipt["kind"]) == (item.status, item.kind), key
        assert receipt["source"]["etag"] == _md5(item.data), f"{key}: not the final version"
        if item.reason is not None:
            assert [error["code"] for error in receipt["errors"]] == [item.reason], key
        if item.status == "processed" and item.kind == "data":
            assert receipt["stats"]["records_invalid"] == item.invalid_records, key
    processed = run.stack.environment.processed_bucket
    listed = [o.key for o in list_objects(run.stack.client("s3"), processed, RECEIPTS_PREFIX)]
    assert sorted(listed) == sorted(receipt_key(key) for key in run.corpus.inputs)


def test_every_output_exists_exactly_once(run: ChaosRun) -> None:
    transform = run.function_env("transform")
    sizes = tuple(int(size) for size in transform.get("THUMBNAIL_SIZES", "128,512").split(","))
    extension = OUTPUT_FORMATS[transform.get("THUMBNAIL_FORMAT", "JPEG")].extension
    s3 = run.stack.client("s3")
    stored = {
        o.key: o.size
        for o in list_objects(s3, run.stack.environment.processed_bucket)
        if not o.key.startswith(LEDGER_PREFIXES)
    }
    expected: set[str] = set()
    for key, item in run.corpus.inputs.items():
        wanted = item.output_keys(sizes, extension)
        listed = {output["key"]: output["size"] for output in run.receipts[key]["outputs"]}
        assert set(listed) == wanted, key
        for output_key, size in listed.items():
            assert stored.get(output_key) == size, output_key
        expected |= wanted
    assert set(stored) == expected


def test_the_archive_holds_each_input_once_and_raw_is_empty(run: ChaosRun) -> None:
    env = run.stack.environment
    s3 = run.stack.client("s3")
    assert [o.key for o in list_objects(s3, env.raw_bucket)] == []
    archived = {}
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=env.archive_bucket):
        for entry in page.get("Contents", []):
            archived[entry["Key"]] = entry["ETag"].strip('"')
    expected = {item.archive_key(): _md5(item.data) for item in run.corpus.inputs.values()}
    current = {k: v for k, v in archived.items() if not k.startswith(ARCHIVE_SUPERSEDED_PREFIX)}
    assert current == expected
    # Each superseded upload is kept once, under superseded/<its version id>/<key>.
    superseded = sorted(
        (key.removeprefix(ARCHIVE_SUPERSEDED_PREFIX).split("/", 1)[1], etag)
        for key, etag in archived.items()
        if key.startswith(ARCHIVE_SUPERSEDED_PREFIX)
    )
    assert superseded == sorted((k, _md5(first)) for k, first in run.corpus.superseded.items())


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


def test_sluice_audit_is_clean(run: ChaosRun) -> None:
    stack = run.stack
    audit = subprocess.run(
        [
            sys.executable,
            "-m",
            "sluice.cli",
            "audit",
            "--wait",
            "60",
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
