"""The root module applied to the emulator with env/local.tfvars, as `sluice up` does.

apply -> the outputs match docs/contracts.md and the wiring is really there (notifications,
disabled mappings with partial batch responses, environment, redrive) -> a second plan has
nothing to do (no perpetual diff), except what the emulator provably drops
(``DROPPED_BY_EMULATOR``) -> the S3 backend's lock file is honoured -> destroy.

The emulator is the end-to-end target's: a moto server, or with
``SLUICE_E2E_TARGET=localstack`` a LocalStack host process (docs/localstack.md).
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import unquote_plus

import boto3
import pytest

from tests.terraform_support import (
    FUNCTIONS,
    REPO_ROOT,
    e2e_target,
    emulator_server,
    target_var_files,
    terraform,
    terraform_env,
    write_stand_in_artifacts,
)

pytestmark = pytest.mark.e2e

REGION = "us-east-1"
STATE_BUCKET = "sluice-local-tfstate"
STATE_KEY = "sluice/local/terraform.tfstate"
CONTRACT_KEYS = {
    "raw_bucket_name",
    "processed_bucket_name",
    "archive_bucket_name",
    "work_bucket_name",
    "queue_urls",
    "bucket_functions",
    "dead_letter_queue_url",
    "dead_letter_queue_arn",
    "images_table_name",
    "labels_table_name",
    "bundle_topic_arn",
    "alerts_topic_arn",
    "function_names",
    "region",
    # The HTTP API and its sign-in (docs/api.md), and the web app.
    "api_url",
    "api_id",
    "api_function_name",
    "user_pool_id",
    "cli_client_id",
    "web_client_id",
    "auth_domain",
    "web_url",
    "web_bucket_name",
    "web_distribution_id",
    "web_response_headers",
}

# Attributes an emulator does not keep, by resource type: they read back empty, so every
# re-plan proposes to set them again. Nothing else may show up in a re-plan.
DROPPED_BY_EMULATOR: dict[str, dict[str, set[str]]] = {
    "moto": {},
    "localstack": {
        # LocalStack 4.14's CloudWatch PutMetricAlarm stores the alarm but not its Tags
        # (services/cloudwatch/provider_v2.py; TagResource does keep tags), so each alarm
        # reads back untagged.
        "aws_cloudwatch_metric_alarm": {"tags", "tags_all"},
    },
}

# Fields inside nested blocks that an emulator does not keep, by resource type and block:
# the block reads back without them, so every re-plan proposes to set them again. Only
# these fields may differ inside those blocks.
DROPPED_INSIDE_BLOCKS: dict[str, dict[str, dict[str, set[str]]]] = {
    "moto": {
        # moto 5.2's CloudFront keeps a distribution's origins, behaviours and certificate
        # but not these fields of them (moto/cloudfront/models.py), so the distribution
        # always shows an in-place update (modules/web/README.md).
        "aws_cloudfront_distribution": {
            "viewer_certificate": {"ssl_support_method", "minimum_protocol_version"},
            "default_cache_behavior": {"forwarded_values"},
            "origin": {"origin_access_control_id"},
        },
    },
    "localstack": {},
}

# Attributes computed from a resource above that the emulator always shows changing: the
# plan can only know them at apply, so they show as an update to a value not yet known.
KNOWN_ONLY_AT_APPLY: dict[str, dict[str, set[str]]] = {
    "moto": {
        # The web bucket's policy names the distribution (origin access control), whose
        # perpetual update above defers the policy document to apply.
        "aws_s3_bucket_policy": {"policy"},
    },
    "localstack": {},
}


def _differing_fields(before: Any, after: Any) -> set[str]:
    """The fields that differ between two lists of blocks (Terraform's nested blocks)."""
    before_blocks = before if isinstance(before, list) else [before]
    after_blocks = after if isinstance(after, list) else [after]
    if len(before_blocks) != len(after_blocks):
        return {"<number of blocks>"}
    fields: set[str] = set()
    for old, new in zip(before_blocks, after_blocks, strict=True):
        old, new = old or {}, new or {}
        fields |= {k for k in {*old, *new} if old.get(k) != new.get(k)}
    return fields


@pytest.fixture
def endpoint(tmp_path: Path) -> Iterator[str]:
    with emulator_server(tmp_path) as url:
        yield url


def _client(service: str, endpoint: str) -> Any:
    make_client: Any = boto3.client  # the service name is dynamic; stubs want a literal
    return make_client(service, region_name=REGION, endpoint_url=endpoint)


def _queue_arn(sqs: Any, url: str) -> str:
    attributes = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])
    arn: str = attributes["Attributes"]["QueueArn"]
    return arn


def _wait_for_record(sqs: Any, queue_url: str, key: str, deadline_seconds: float = 30) -> Any:
    """The S3 event record for ``key`` on the queue (skipping s3:TestEvent), or fail."""
    deadline = time.monotonic() + deadline_seconds
    while time.monotonic() < deadline:
        response = sqs.receive_message(
            QueueUrl=queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=1
        )
        for message in response.get("Messages", []):
            for record in json.loads(message["Body"]).get("Records", []):
                # S3 sends keys URL-encoded (moto also encodes "/" as %2F).
                if unquote_plus(record["s3"]["object"]["key"]) == key:
                    return record
    pytest.fail(f"no S3 event for {key} on {queue_url} within {deadline_seconds} s")


def _replan(tf_vars: list[str], work: Path, env: dict[str, str]) -> dict[str, dict[str, Any]]:
    """The resource changes of a fresh plan, by address: (type, actions, attributes, before)."""
    plan = work / "replan.tfplan"
    terraform(["plan", f"-out={plan}", *tf_vars], cwd=REPO_ROOT, env=env)
    shown = json.loads(terraform(["show", "-json", str(plan)], cwd=REPO_ROOT, env=env).stdout)
    changes: dict[str, dict[str, Any]] = {}
    for resource in shown.get("resource_changes", []):
        change = resource["change"]
        if change["actions"] in (["no-op"], ["read"]):
            continue
        before, after = change.get("before") or {}, change.get("after") or {}
        changes[resource["address"]] = {
            "type": resource["type"],
            "actions": change["actions"],
            "attributes": {k for k in {*before, *after} if before.get(k) != after.get(k)},
            "before": before,
            "after": after,
        }
    return changes


def test_local_environment_applies_plans_clean_and_destroys(tmp_path: Path, endpoint: str) -> None:
    artifacts = write_stand_in_artifacts(tmp_path / "build")
    env = terraform_env(tmp_path)
    s3 = _client("s3", endpoint)
    s3.create_bucket(Bucket=STATE_BUCKET)
    s3.put_bucket_versioning(Bucket=STATE_BUCKET, VersioningConfiguration={"Status": "Enabled"})

    terraform(
        [
            "init",
            "-lockfile=readonly",
            "-backend-config=env/local.backend.hcl",
            f'-backend-config=endpoints={{s3="{endpoint}"}}',
        ],
        cwd=REPO_ROOT,
        env=env,
    )
    tf_vars = [
        "-var-file=env/local.tfvars",
        f"-var=aws_endpoint_url={endpoint}",
        f"-var=artifacts_dir={artifacts}",
    ]
    # On LocalStack, its variant: the API, sign-in and web app off (docs/localstack.md).
    tf_vars += target_var_files(tmp_path, env, tf_vars)
    terraform(["apply", "-auto-approve", *tf_vars], cwd=REPO_ROOT, env=env)

    # State lives in the emulator's bucket, and the lock file is gone after the run.
    state_keys = {o["Key"] for o in s3.list_objects_v2(Bucket=STATE_BUCKET).get("Contents", [])}
    assert state_keys == {STATE_KEY}

    outputs = json.loads(
        terraform(["output", "-json", "environments"], cwd=REPO_ROOT, env=env).stdout
    )
    assert set(outputs) == {"local"}
    local = outputs["local"]
    assert set(local) == CONTRACT_KEYS
    assert local["region"] == REGION
    assert local["function_names"] == {f: f"sluice-local-{f}" for f in FUNCTIONS}
    assert set(local["queue_urls"]) == set(FUNCTIONS)
    # The wiring the CLI redrives by: which bucket's notifications trigger which function.
    assert local["bucket_functions"] == {
        local["raw_bucket_name"]: "transform",
        local["processed_bucket_name"]: "archive",
        local["archive_bucket_name"]: "tag",
        local["work_bucket_name"]: "bundle",
    }
    assert local["images_table_name"] == "sluice-local-images"
    assert local["labels_table_name"] == "sluice-local-labels"
    account = _client("sts", endpoint).get_caller_identity()["Account"]
    for bucket in ("raw", "processed", "archive", "work"):
        name = local[f"{bucket}_bucket_name"]
        assert name == f"sluice-local-{bucket}-{account}-{REGION}"
        s3.head_bucket(Bucket=name)

    sqs = _client("sqs", endpoint)
    queue_arns = {f: _queue_arn(sqs, url) for f, url in local["queue_urls"].items()}
    assert _queue_arn(sqs, local["dead_letter_queue_url"]) == local["dead_letter_queue_arn"]

    # Notifications: one configuration per bucket, to the handler's queue, with its prefix;
    # ARCHIVE also sends removals of archived inputs to the tag queue (decision 30).
    removed = "s3:ObjectRemoved:*"
    expected_notifications = {
        "raw": {("transform", "s3:ObjectCreated:*", None)},
        "processed": {("archive", "s3:ObjectCreated:*", "receipts/")},
        "archive": {("tag", "s3:ObjectCreated:*", "images/")}
        | {("tag", removed, p) for p in ("images/", "data/", "rejected/", "superseded/")},
        "work": {("bundle", "s3:ObjectCreated:*", "requests/")},
    }
    by_arn = {arn: function for function, arn in queue_arns.items()}
    for bucket, expected in expected_notifications.items():
        config = s3.get_bucket_notification_configuration(Bucket=local[f"{bucket}_bucket_name"])
        found = set()
        for queue_config in config["QueueConfigurations"]:
            rules = queue_config.get("Filter", {}).get("Key", {}).get("FilterRules", [])
            (event,) = queue_config["Events"]
            prefixes = [r["Value"] for r in rules if r["Name"].lower() == "prefix"]
            found.add((by_arn[queue_config["QueueArn"]], event, prefixes[0] if prefixes else None))
        assert found == expected, bucket
    s3.put_object(Bucket=local["raw_bucket_name"], Key="e2e/hello.json", Body=b"{}")
    record = _wait_for_record(sqs, local["queue_urls"]["transform"], "e2e/hello.json")
    assert record["s3"]["bucket"]["name"] == local["raw_bucket_name"]

    # Each queue: visibility 6 x the function timeout, redrive to the DLQ after 3 receives.
    lambda_ = _client("lambda", endpoint)
    mappings = lambda_.list_event_source_mappings()["EventSourceMappings"]
    assert len(mappings) == len(FUNCTIONS)
    for function in FUNCTIONS:
        configuration = lambda_.get_function_configuration(
            FunctionName=local["function_names"][function]
        )
        attributes = sqs.get_queue_attributes(
            QueueUrl=local["queue_urls"][function], AttributeNames=["All"]
        )["Attributes"]
        assert int(attributes["VisibilityTimeout"]) == 6 * configuration["Timeout"]
        assert json.loads(attributes["RedrivePolicy"]) == {
            "deadLetterTargetArn": local["dead_letter_queue_arn"],
            "maxReceiveCount": 3,
        }
        (mapping,) = [m for m in mappings if m["EventSourceArn"] == queue_arns[function]]
        assert mapping["FunctionArn"] == configuration["FunctionArn"]
        assert mapping["State"] == "Disabled"  # the local runner serves it, not moto
        assert mapping["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
        function_env = configuration["Environment"]["Variables"]
        assert function_env["POWERTOOLS_SERVICE_NAME"] == f"sluice-{function}"
        assert function_env["SLUICE_ENV"] == "local"
        assert function_env["RAW_BUCKET"] == local["raw_bucket_name"]
        assert function_env["LABELS_TABLE"] == local["labels_table_name"]
        assert configuration["Runtime"] == "python3.12"
    transform_env = lambda_.get_function_configuration(
        FunctionName=local["function_names"]["transform"]
    )["Environment"]["Variables"]
    assert transform_env["THUMBNAIL_SIZES"] == "64,128"
    bundle_env = lambda_.get_function_configuration(FunctionName=local["function_names"]["bundle"])[
        "Environment"
    ]["Variables"]
    assert bundle_env["BUNDLE_TOPIC_ARN"] == local["bundle_topic_arn"]
    assert "THUMBNAIL_SIZES" not in bundle_env
    tag_env = lambda_.get_function_configuration(FunctionName=local["function_names"]["tag"])[
        "Environment"
    ]["Variables"]
    assert tag_env["LABELER"] == "offline"

    # What the emulator reads back matches the configuration: nothing left to change but
    # in-place updates of what it provably drops, which it reads back empty.
    dropped = DROPPED_BY_EMULATOR[e2e_target()]
    dropped_inside = DROPPED_INSIDE_BLOCKS[e2e_target()]
    deferred = KNOWN_ONLY_AT_APPLY[e2e_target()]
    for address, change in _replan(tf_vars, tmp_path, env).items():
        blocks = dropped_inside.get(change["type"], {})
        later = deferred.get(change["type"], set())
        allowed = dropped.get(change["type"], set()) | set(blocks) | later
        assert change["actions"] == ["update"] and change["attributes"] <= allowed, (
            f"re-plan changes {address}: {change['actions']} {sorted(change['attributes'])}"
        )
        for name in change["attributes"]:
            if name in blocks:
                fields = _differing_fields(change["before"].get(name), change["after"].get(name))
                assert fields <= blocks[name], f"{address}: {name} differs in {sorted(fields)}"
            elif name in later:
                assert change["after"].get(name) is None, f"{address}: {name} is a new value"
            else:
                assert not change["before"].get(name), address

    # The backend's S3 lock file (conditional PUT) keeps a second run out.
    lock_key = f"{STATE_KEY}.tflock"
    s3.put_object(Bucket=STATE_BUCKET, Key=lock_key, Body=json.dumps({"ID": "e2e-held-lock"}))
    locked = terraform(
        ["plan", "-lock-timeout=0s", *tf_vars], cwd=REPO_ROOT, env=env, expect_codes=(1,)
    )
    assert "Error acquiring the state lock" in locked.stderr
    s3.delete_object(Bucket=STATE_BUCKET, Key=lock_key)

    terraform(["destroy", "-auto-approve", *tf_vars], cwd=REPO_ROOT, env=env)
    remaining = terraform(["state", "list"], cwd=REPO_ROOT, env=env).stdout.split()
    assert remaining == []
    buckets = {b["Name"] for b in s3.list_buckets()["Buckets"]}
    assert buckets == {STATE_BUCKET}
    assert _client("lambda", endpoint).list_functions()["Functions"] == []
