"""Security properties of what Terraform deploys (GitHub issue 7), read from Terraform itself.

The function policies are rendered from ``aws_iam_policy_document`` data sources whose
inputs (bucket, table and topic ARNs) are unknown until those resources exist, so a plan
alone would leave every ``Resource`` unknown. The local environment is therefore applied
to a throw-away emulator (the end-to-end target's: moto, or LocalStack with
``SLUICE_E2E_TARGET=localstack``; ``env/local.tfvars``, the state in that server, own
``TF_DATA_DIR``) with the switches only production turns on switched on too
(``PRODUCTION_SWITCHES``: the environment's own KMS key, ARCHIVE Object Lock), so their
resources and grants are checked as applied; ``terraform show -json`` gives every policy
as deployed; the server
and everything in it go away with the test, so there is nothing to destroy. Production is
only planned (``env/prod.tfvars`` with the endpoint pointed at the same server): its
bucket policies and labeler differ from local, and the plan shows their statements.

Checked:

* every function policy (the four queue handlers, the api function's, and the upload
  role the api hands out one-key credentials of) grants no more than an explicit
  per-handler allowance (below,
  with the reason for each grant): no ``*`` or service-wide action, no ``*`` resource
  except for actions without resource-level permissions (``WILDCARD_RESOURCE_ACTIONS``);
  S3 only on the buckets and prefixes a handler uses, queues, log groups, tables and
  topics only its own. The cross-cutting rules are spelled out as their own test;
* the policies allow every call the handlers really make, and grant nothing that no call
  uses: the samples and the corpus go through all four handlers in process (moto), every
  API call is recorded and turned into the IAM action and resource it needs, each is
  evaluated against the deployed policy of the handler that made it, and each granted
  (action, resource) must be used by one of them unless ``UNUSED_BUT_NEEDED`` gives the
  reason it is needed anyway (the Lambda service's own calls, failure-only paths);
* every bucket: public access blocked (all four settings), encrypted, versioned, owner-
  enforced; outside the emulator, a bucket policy denies any request without TLS;
* with ``kms_cmk_enabled``: one key with rotation and a two-statement key policy encrypts
  every bucket (with a bucket key), table and queue, and each role may use only that key,
  for only the KMS actions its handler needs;
* ARCHIVE keeps noncurrent versions 365 days in production (30 elsewhere) and, when asked,
  locks versions in governance mode;
* only the bundle role may publish to the bundle topic;
* a presigned bundle link cannot outlive 7 days: the Terraform variable refuses more
  (the handler's own cap is covered by tests/unit/test_config.py and
  tests/integration/test_bundle.py).
"""

from __future__ import annotations

import fnmatch
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from types import ModuleType
from typing import Any
from urllib.parse import unquote, urlsplit

import boto3
import pytest

from sluice import request_topics
from sluice.keys import image_id, lease_key, receipt_key
from tests.conftest import NOTIFY_TOPIC_PREFIX, FakeContext, Pipeline, load_handler
from tests.integration.api_support import ADMIN, ApiClient, api_handler, encoded
from tests.s3events import golden, object_event_for, s3_event, s3_record, sqs_batch
from tests.security_support import SAMPLES_DIR, Invoke, drive_pipeline, pipeline_inputs
from tests.terraform_support import (
    FUNCTIONS,
    NEEDS_API,
    REPO_ROOT,
    e2e_target,
    emulator_server,
    target_environments,
    terraform,
    terraform_env,
    tfvars_environments,
    write_stand_in_artifacts,
)

pytestmark = pytest.mark.e2e

REGION = "us-east-1"
STATE_BUCKET = "sluice-local-tfstate"
MAX_URL_TTL_SECONDS = 7 * 24 * 3600
BUCKETS = ("raw", "processed", "archive", "work")
FAKE_CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SESSION_TOKEN": "testing",
    "AWS_DEFAULT_REGION": REGION,
    "AWS_REGION": REGION,
}

PRODUCTION_SWITCHES = {"kms_cmk_enabled": True, "archive_object_lock_days": 3}
"""Set on the local environment for the apply (the other attributes as env/local.tfvars)."""

WILDCARD_RESOURCE_ACTIONS = {
    # Rekognition's DetectLabels on S3 bytes has no resource-level permissions: "*" is the
    # only resource IAM accepts for it (the image is authorised by s3:GetObject instead).
    "rekognition:detectlabels": "no resource-level permissions",
    # The bundle handler's sweep finds its request topics by name (sluice.request_topics).
    "sns:listtopics": "no resource-level permissions",
}

REQUEST_TOPIC_ACTIONS = {
    "sns:createtopic",
    "sns:tagresource",
    "sns:subscribe",
    "sns:listsubscriptionsbytopic",
    "sns:publish",
    "sns:listtagsforresource",
    "sns:deletetopic",
}
"""What the bundle handler does to a request's own topic, and only under its prefix."""

POLICIES = (*FUNCTIONS, "api", "upload")
"""Every role policy Terraform deploys: the queue handlers', the api's, the upload role's."""

WRITE_OBJECT_ACTIONS = {"s3:putobject", "s3:abortmultipartupload", "s3:putobjecttagging"}
DELETE_OBJECT_ACTIONS = {"s3:deleteobject", "s3:deleteobjectversion"}
MULTIPART_WRITE = {"s3:putobject", "s3:abortmultipartupload"}


# --- Terraform runs ------------------------------------------------------------------------


@dataclass(frozen=True)
class TerraformViews:
    local_state: dict[str, Any]
    prod_plan: dict[str, Any]
    ttl_plan_error: str


@pytest.fixture(scope="module")
def views(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TerraformViews]:
    work = tmp_path_factory.mktemp("security-plan")
    with emulator_server(work) as endpoint:
        env = terraform_env(work, FAKE_CREDENTIALS)
        for name in ("AWS_ENDPOINT_URL", "AWS_PROFILE"):
            env.pop(name, None)
        s3 = boto3.client(
            "s3",
            region_name=REGION,
            endpoint_url=endpoint,
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
        )
        s3.create_bucket(Bucket=STATE_BUCKET)
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
        artifacts = write_stand_in_artifacts(work / "build")
        common = [f"-var=aws_endpoint_url={endpoint}", f"-var=artifacts_dir={artifacts}"]

        too_long = work / "ttl.tfvars.json"
        too_long.write_text(
            json.dumps(
                {"environments": {"local": {"bundle_url_ttl_seconds": MAX_URL_TTL_SECONDS + 1}}}
            )
        )
        refused = terraform(
            ["plan", "-var-file=env/local.tfvars", f"-var-file={too_long}", *common],
            cwd=REPO_ROOT,
            env=env,
            expect_codes=(1,),
        )

        plan_file = work / "prod.tfplan"
        terraform(
            ["plan", "-refresh=false", f"-out={plan_file}", "-var-file=env/prod.tfvars", *common],
            cwd=REPO_ROOT,
            env=env,
        )
        prod_plan = json.loads(
            terraform(["show", "-json", str(plan_file)], cwd=REPO_ROOT, env=env).stdout
        )

        switched_on = work / "production-switches.tfvars.json"
        environments = tfvars_environments(env, ["-var-file=env/local.tfvars", *common])
        environments["local"].update(PRODUCTION_SWITCHES)
        # On LocalStack, its variant: the API, sign-in and web app off (docs/localstack.md).
        environments = target_environments(environments)
        switched_on.write_text(json.dumps({"environments": environments}))
        terraform(
            [
                "apply",
                "-auto-approve",
                "-var-file=env/local.tfvars",
                f"-var-file={switched_on}",
                *common,
            ],
            cwd=REPO_ROOT,
            env=env,
        )
        local_state = json.loads(terraform(["show", "-json"], cwd=REPO_ROOT, env=env).stdout)
        yield TerraformViews(local_state, prod_plan, " ".join(refused.stderr.split()))


def _resources(module: dict[str, Any]) -> Iterator[dict[str, Any]]:
    yield from module.get("resources", [])
    for child in module.get("child_modules", []):
        yield from _resources(child)


def _of_type(values: dict[str, Any], kind: str) -> list[dict[str, Any]]:
    return [r for r in _resources(values["root_module"]) if r["type"] == kind]


def _key_in(address: str, module: str) -> str:
    found = re.search(rf'module\.{module}\["([^"]+)"\]', address)
    assert found, f"{address} is not in module.{module}[...]"
    return found.group(1)


@dataclass(frozen=True)
class Deployed:
    """The local environment as applied: ARNs by role, and each function's policy."""

    buckets: dict[str, str]  # raw/processed/archive/work -> bucket ARN
    queues: dict[str, str]  # function -> queue ARN
    log_groups: dict[str, str]  # function (and api) -> log group ARN
    upload_role: str
    images_table: str
    labels_table: str
    bundle_topic: str
    request_topics: str  # the bundle handler's per-request topics: an ARN ending in *
    data_key: str  # the environment's own KMS key (PRODUCTION_SWITCHES)
    policies: dict[str, dict[str, Any]]  # function, api, upload -> policy document

    def grants(self, function: str) -> set[tuple[str, str]]:
        """(lower-cased action, resource) pairs the function's policy allows."""
        pairs = set()
        for statement in _statements(self.policies[function]):
            for action in _as_list(statement["Action"]):
                for resource in _as_list(statement["Resource"]):
                    pairs.add((action.lower(), resource))
        return pairs


def _as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def _statements(policy: dict[str, Any]) -> list[dict[str, Any]]:
    statements: list[dict[str, Any]] = _as_list(policy["Statement"])
    return statements


def _role_key(resource: dict[str, Any]) -> str:
    """Whose role or policy, by the role's name (``sluice-local-<function>``, ``-api``,
    ``-upload``), wherever the configuration declares it (each function's role is its lambda
    module's, the upload role the pipeline's)."""
    values = resource["values"]
    role = values["name"] if resource["type"] == "aws_iam_role" else values["role"]
    return str(role).removeprefix("sluice-local-")


@pytest.fixture(scope="module")
def deployed(views: TerraformViews) -> Deployed:
    values = views.local_state["values"]
    # The pipeline's buckets; the web app's bucket (module.web) holds no data and no
    # function reaches it (its own checks are in test_web_e2e and the static tests).
    buckets = {
        _key_in(r["address"], "bucket"): r["values"]["arn"]
        for r in _of_type(values, "aws_s3_bucket")
        if "module.bucket[" in r["address"]
    }
    queues = {
        _key_in(r["address"], "function"): r["values"]["arn"]
        for r in _of_type(values, "aws_sqs_queue")
        if "module.function[" in r["address"]
    }
    log_groups = {
        _key_in(r["address"], "function"): r["values"]["arn"]
        for r in _of_type(values, "aws_cloudwatch_log_group")
        if "module.function[" in r["address"]
    }
    for r in _of_type(values, "aws_cloudwatch_log_group"):
        if "module.api_function[" in r["address"]:
            log_groups["api"] = r["values"]["arn"]
    upload_roles = [
        r["values"]["arn"]
        for r in _of_type(values, "aws_iam_role")
        if r["values"]["name"].endswith("-upload")
    ]
    tables = {
        r["values"]["name"]: r["values"]["arn"] for r in _of_type(values, "aws_dynamodb_table")
    }
    topics = {r["values"]["name"]: r["values"]["arn"] for r in _of_type(values, "aws_sns_topic")}
    (data_key,) = [
        r["values"]["arn"] for r in _of_type(values, "aws_kms_key") if r["name"] == "data"
    ]
    policies = {
        _role_key(r): json.loads(r["values"]["policy"])
        for r in _of_type(values, "aws_iam_role_policy")
    }
    assert set(buckets) == set(BUCKETS)
    assert set(queues) == set(FUNCTIONS)
    # The api and its upload role exist exactly where the environment has the API: not on
    # LocalStack's variant (no API Gateway v2 there), so nothing of them is left behind.
    api = () if e2e_target() == "localstack" else ("api",)
    assert set(log_groups) == {*FUNCTIONS, *api}
    assert set(policies) == set(POLICIES if api else FUNCTIONS)
    assert len(upload_roles) == len(api)
    return Deployed(
        buckets=buckets,
        queues=queues,
        log_groups=log_groups,
        upload_role=upload_roles[0] if upload_roles else "",
        images_table=tables["sluice-local-images"],
        labels_table=tables["sluice-local-labels"],
        bundle_topic=topics["sluice-local-bundles"],
        request_topics=topics["sluice-local-bundles"].removesuffix("bundles") + "notify-*",
        data_key=data_key,
        policies=policies,
    )


# --- what each handler may do --------------------------------------------------------------


def allowance(d: Deployed, function: str) -> set[tuple[str, str]]:
    """The most a function's policy may grant: what its handler does, on what it owns."""

    def objects(bucket: str, *prefixes: str) -> list[str]:
        return [f"{d.buckets[bucket]}/{prefix}*" for prefix in prefixes]

    def grant(actions: set[str], resources: list[str]) -> set[tuple[str, str]]:
        return {(action, resource) for action in actions for resource in resources}

    logs = {"logs:createlogstream", "logs:putlogevents"}
    common = (
        grant(
            {
                "sqs:receivemessage",
                "sqs:deletemessage",
                "sqs:getqueueattributes",
                "sqs:changemessagevisibility",
            },
            [d.queues[function]],
        )
        | grant(logs, [f"{d.log_groups[function]}:*"])
        if function in FUNCTIONS
        else set()
    )
    upload_keys = [f"{d.buckets['raw']}/uploads/*", f"{d.buckets['raw']}/*/uploads/*"]
    outputs = objects("processed", "data/", "errors/", "thumbnails/", "receipts/")
    archived = objects("archive", "images/", "data/", "rejected/")
    superseded = objects("archive", "superseded/")
    by_function = {
        # Reads the upload; writes its outputs and receipt (HEAD and delete outputs an
        # earlier version left); reads receipts for idempotency; the image metadata item;
        # the key's lease; records a version deleted before it was processed.
        "transform": grant({"s3:getobject"}, objects("raw", ""))
        | grant(MULTIPART_WRITE | {"s3:getobject", "s3:deleteobject"}, outputs)
        | grant(
            {"s3:putobject", "s3:getobject", "s3:deleteobject"}, objects("processed", "leases/")
        )
        | grant({"s3:putobject"}, objects("processed", "versions/"))
        | grant({"s3:listbucket"}, [d.buckets["processed"]])
        # A version deleted before it was processed, named by an event without a version
        # id, is found among RAW's versions by its ETag.
        | grant({"s3:listbucketversions"}, [d.buckets["raw"]])
        # Outputs of the archived version that a version deleted while transformed wrote
        # over are copied back from their own versions.
        | grant({"s3:getobjectversion"}, objects("processed", "data/", "errors/", "thumbnails/"))
        | grant({"s3:listbucketversions"}, [d.buckets["processed"]])
        # The image's item; deleted when its version died before its receipt and is gone.
        | grant({"dynamodb:updateitem", "dynamodb:deleteitem"}, [d.images_table]),
        # Reads receipts; copies RAW -> ARCHIVE server side, verifies, deletes from RAW.
        "archive": grant({"s3:getobject"}, objects("processed", "receipts/"))
        | grant(
            {"s3:getobject", "s3:getobjectversion"} | DELETE_OBJECT_ACTIONS,
            objects("raw", ""),
        )
        | grant({"s3:listbucket"}, [d.buckets["raw"], d.buckets["archive"]])
        | grant(MULTIPART_WRITE | {"s3:getobject", "s3:getobjectversion"}, archived + superseded)
        # Older versions: listed in RAW, archived under superseded/ and recorded; copies
        # of them under the current names made noncurrent; a replaced image withdrawn.
        | grant({"s3:listbucketversions"}, [d.buckets["raw"]])
        | grant({"s3:putobject"}, objects("processed", "versions/"))
        | grant({"s3:deleteobject"}, archived)
        | grant({"dynamodb:updateitem", "dynamodb:deleteitem"}, [d.images_table])
        | grant({"dynamodb:updateitem", "dynamodb:deleteitem"}, [d.labels_table])
        # An input deleted from RAW after its receipt: its outputs and receipt go, under
        # the key's lease (sluice.deletion).
        | grant({"s3:deleteobject"}, outputs)
        | grant(
            {"s3:putobject", "s3:getobject", "s3:deleteobject"}, objects("processed", "leases/")
        )
        | grant({"s3:listbucket"}, [d.buckets["processed"]]),
        # Reads archived images; labels -> images item and labels table (DeleteItem: the
        # item a lease alone created for an image withdrawn meanwhile). A removed archived
        # input (sluice.deletion): which copy was removed, the ledger, what it owned.
        "tag": grant({"s3:getobject", "s3:getobjectversion"}, archived)
        | grant({"s3:getobject"}, superseded)
        | grant({"s3:listbucket", "s3:listbucketversions"}, [d.buckets["archive"]])
        | grant({"s3:listbucket"}, [d.buckets["processed"]])
        | grant({"s3:getobject"}, objects("processed", "receipts/", "versions/"))
        | grant({"s3:putobject"}, objects("processed", "versions/"))
        | grant({"s3:deleteobject"}, outputs)
        | grant(
            {"s3:putobject", "s3:getobject", "s3:deleteobject"}, objects("processed", "leases/")
        )
        | grant({"dynamodb:updateitem", "dynamodb:deleteitem"}, [d.images_table])
        | grant(
            {"dynamodb:putitem", "dynamodb:updateitem", "dynamodb:deleteitem"}, [d.labels_table]
        )
        | grant({"rekognition:detectlabels"}, ["*"]),
        # Reads requests and archived images; writes (and presigns) bundles; finds images
        # by label; notifies.
        "bundle": grant({"s3:getobject"}, objects("work", "requests/"))
        | grant(MULTIPART_WRITE | {"s3:getobject"}, objects("work", "bundles/"))
        | grant({"s3:listbucket"}, [d.buckets["work"]])
        | grant({"s3:getobject"}, objects("archive", "images/"))
        | grant({"dynamodb:query", "dynamodb:getitem"}, [d.labels_table])
        | grant({"dynamodb:batchgetitem"}, [d.images_table])
        | grant({"sns:publish"}, [d.bundle_topic])
        # and tells a request's recipient through a topic of the request's own.
        | grant(REQUEST_TOPIC_ACTIONS, [d.request_topics])
        | grant({"sns:listtopics"}, ["*"]),
        # Signs uploads (presigned PUTs and parts carry the signer's permissions), hands out
        # one-key credentials, reads receipts, links and withdraws images, requests bundles.
        # (Where the environment has no API, LocalStack's variant, there is no log group.)
        "api": grant(logs, [f"{d.log_groups['api']}:*"] if "api" in d.log_groups else [])
        | grant(MULTIPART_WRITE, upload_keys)
        | grant({"s3:listbucket"}, [d.buckets["raw"], d.buckets["processed"], d.buckets["work"]])
        | grant({"sts:assumerole"}, [d.upload_role])
        | grant({"s3:getobject"}, objects("processed", "receipts/", "data/", "errors/"))
        | grant({"s3:getobject", "s3:deleteobject"}, objects("processed", "thumbnails/"))
        | grant(
            {"s3:getobject", "s3:getobjectversion", "s3:deleteobject"},
            objects("archive", "images/"),
        )
        | grant({"s3:listbucket", "s3:listbucketversions"}, [d.buckets["archive"]])
        | grant({"s3:getobject", "s3:putobject"}, objects("processed", "versions/"))
        | grant({"s3:deleteobject"}, objects("processed", "receipts/"))
        | grant(
            {"s3:putobject", "s3:getobject", "s3:deleteobject"}, objects("processed", "leases/")
        )
        | grant({"s3:putobject"}, objects("work", "requests/"))
        | grant({"s3:getobject"}, objects("work", "bundles/"))
        | grant(
            {
                "dynamodb:getitem",
                "dynamodb:scan",
                "dynamodb:batchgetitem",
                "dynamodb:updateitem",
                "dynamodb:deleteitem",
            },
            [d.images_table],
        )
        | grant(
            {"dynamodb:query", "dynamodb:getitem", "dynamodb:deleteitem", "dynamodb:updateitem"},
            [d.labels_table],
        ),
        # What its session policy then narrows to one key.
        "upload": grant(MULTIPART_WRITE, upload_keys),
    }
    # The environment's key: every handler decrypts its queue and what it reads; only the
    # ones that write objects generate data keys.
    key_actions = {"kms:decrypt", "kms:generatedatakey"}
    return common | by_function[function] | grant(key_actions, [d.data_key])


@pytest.mark.parametrize(
    "function",
    [name if name in FUNCTIONS else pytest.param(name, marks=NEEDS_API) for name in POLICIES],
)
def test_function_policy_grants_no_more_than_its_handler_needs(
    deployed: Deployed, function: str
) -> None:
    policy = deployed.policies[function]
    for statement in _statements(policy):
        assert statement["Effect"] == "Allow"
        assert {"NotAction", "NotResource", "Principal"}.isdisjoint(statement), statement
    grants = deployed.grants(function)
    for action, resource in grants:
        _, _, name = action.partition(":")
        assert "*" not in action and name, f"{function}: wildcard action {action}"
        if resource == "*":
            assert action in WILDCARD_RESOURCE_ACTIONS, f"{function}: {action} on *"
    assert grants - allowance(deployed, function) == set()


def _writers(d: Deployed, bucket: str, actions: set[str]) -> dict[str, set[str]]:
    """Function -> resources in ``bucket`` on which it has one of ``actions``."""
    arn = d.buckets[bucket]
    found: dict[str, set[str]] = {}
    for function in FUNCTIONS:
        for action, resource in d.grants(function):
            if action in actions and (resource == "*" or resource.startswith(arn)):
                found.setdefault(function, set()).add(resource.removeprefix(arn))
    return found


def test_cross_cutting_rules_of_the_pipeline(deployed: Deployed) -> None:
    d = deployed
    # Nobody writes to RAW (clients do), only archive deletes from it.
    assert _writers(d, "raw", WRITE_OBJECT_ACTIONS) == {}
    assert _writers(d, "raw", DELETE_OBJECT_ACTIONS) == {"archive": {"/*"}}
    # Transform writes PROCESSED (its outputs, receipts, leases, deleted versions), never
    # ARCHIVE; archive and tag write only the version ledger and the key's lease there
    # (never receipts/, archive's trigger), and archive is the only writer of ARCHIVE.
    assert _writers(d, "processed", WRITE_OBJECT_ACTIONS) == {
        "transform": {
            "/data/*",
            "/errors/*",
            "/thumbnails/*",
            "/receipts/*",
            "/leases/*",
            "/versions/*",
        },
        "archive": {"/versions/*", "/leases/*"},
        "tag": {"/versions/*", "/leases/*"},
    }
    # What a deleted input owned goes (sluice.deletion): archive (deleted from RAW after
    # its receipt) and tag (removed from ARCHIVE) delete its outputs and receipt.
    owned = {"/data/*", "/errors/*", "/thumbnails/*", "/receipts/*", "/leases/*"}
    assert _writers(d, "processed", DELETE_OBJECT_ACTIONS) == {
        "transform": {"/data/*", "/errors/*", "/thumbnails/*", "/leases/*"},
        "archive": owned,
        "tag": owned,
    }
    assert _writers(d, "archive", WRITE_OBJECT_ACTIONS) == {
        "archive": {"/images/*", "/data/*", "/rejected/*", "/superseded/*"}
    }
    # Bundle writes only WORK bundles/ (never requests/, its trigger); tag, triggered by
    # ARCHIVE, writes nothing there (decision 5).
    assert _writers(d, "work", WRITE_OBJECT_ACTIONS) == {"bundle": {"/bundles/*"}}
    assert "tag" not in _writers(d, "archive", WRITE_OBJECT_ACTIONS | DELETE_OBJECT_ACTIONS)
    for function in FUNCTIONS:
        grants = d.grants(function)
        # Queues, log groups: its own only. Tables: only the pipeline's. Topics: bundle only.
        assert {r for a, r in grants if a.startswith("sqs:")} == {d.queues[function]}
        assert {r for a, r in grants if a.startswith("logs:")} == {f"{d.log_groups[function]}:*"}
        assert {r for a, r in grants if a.startswith("dynamodb:")} <= {
            d.images_table,
            d.labels_table,
        }
        publishes = {r for a, r in grants if a == "sns:publish"}
        assert publishes == ({d.bundle_topic, d.request_topics} if function == "bundle" else set())
        topics = {r for a, r in grants if a.startswith("sns:") and a != "sns:listtopics"}
        assert topics == publishes


def test_only_the_bundle_role_may_publish_to_the_bundle_topic(views: TerraformViews) -> None:
    values = views.local_state["values"]
    (topic_policy,) = [
        r["values"]
        for r in _of_type(values, "aws_sns_topic_policy")
        if r["values"]["arn"].endswith(":sluice-local-bundles")
    ]
    roles = {_role_key(r): r["values"]["arn"] for r in _of_type(values, "aws_iam_role")}
    statements = {s["Sid"]: s for s in _statements(json.loads(topic_policy["policy"]))}
    topic = topic_policy["arn"]
    publishers = {
        (statement["Effect"], json.dumps(statement["Principal"], sort_keys=True))
        for statement in statements.values()
        if "sns:Publish" in _as_list(statement["Action"])
    }
    assert publishers == {
        ("Allow", json.dumps({"AWS": roles["bundle"]})),
        ("Deny", json.dumps({"AWS": "*"})),
    }
    deny = statements["NobodyElsePublishes"]
    assert deny["Condition"] == {"ArnNotEquals": {"aws:PrincipalArn": roles["bundle"]}}
    assert deny["Resource"] == topic
    # The account keeps managing the topic (through IAM), but not publishing.
    owner = statements["AccountOwnerManages"]
    assert owner["Effect"] == "Allow" and owner["Resource"] == topic
    assert owner["Principal"]["AWS"].endswith(":root")
    assert {"sns:SetTopicAttributes", "sns:DeleteTopic"} <= set(owner["Action"])
    assert "sns:Publish" not in owner["Action"]


@NEEDS_API
def test_only_the_api_and_its_upload_role_write_raw_and_only_upload_keys(
    deployed: Deployed,
) -> None:
    d = deployed
    raw = d.buckets["raw"]
    for who in ("api", "upload"):
        writes = {r for a, r in d.grants(who) if a in WRITE_OBJECT_ACTIONS and r.startswith(raw)}
        assert writes == {f"{raw}/uploads/*", f"{raw}/*/uploads/*"}, who
    api = d.grants("api")
    assert {r for a, r in api if a in WRITE_OBJECT_ACTIONS and r.startswith(d.buckets["work"])} == {
        f"{d.buckets['work']}/requests/*"
    }
    assert {a for a, _ in api if a.startswith(("sqs:", "sns:", "rekognition:"))} == set()
    assert {r for a, r in api if a == "sts:assumerole"} == {d.upload_role}
    # Besides its S3 writes, only the environment's key (SSE-KMS uploads need it).
    upload = d.grants("upload")
    assert {r for a, r in upload if not a.startswith("s3:")} == {d.data_key}


# --- the calls the handlers make -----------------------------------------------------------


@dataclass
class CallRecorder:
    """Every API call made through the default boto3 session, by the handler running."""

    running: str | None = None
    calls: list[tuple[str, str, str, dict[str, Any]]] | None = None

    def __call__(self, params: dict[str, Any], model: Any, **_: Any) -> None:
        if self.running is not None and self.calls is not None:
            service = model.service_model.service_name
            self.calls.append((self.running, service, model.name, dict(params)))


def _object(bucket: str, key: str) -> str:
    return f"{bucket}/{key}"


def iam_requests(
    service: str, operation: str, params: dict[str, Any], arn: dict[str, str]
) -> list[tuple[str, str]]:
    """The (action, resource) pairs IAM authorises for one API call (Service Authorization
    Reference); ``arn`` maps the in-process bucket/table/topic names to deployed ARNs."""
    if service == "s3":
        bucket = arn[params["Bucket"]]
        key = str(params.get("Key", ""))
        versioned = bool(params.get("VersionId"))
        if operation in ("GetObject", "HeadObject"):
            action = "s3:getobjectversion" if versioned else "s3:getobject"
            return [(action, _object(bucket, key))]
        if operation in ("PutObject", "CreateMultipartUpload", "UploadPart"):
            return [("s3:putobject", _object(bucket, key))]
        if operation == "CompleteMultipartUpload":
            return [("s3:putobject", _object(bucket, key))]
        if operation == "AbortMultipartUpload":
            return [("s3:abortmultipartupload", _object(bucket, key))]
        if operation == "ListParts":
            return [("s3:listmultipartuploadparts", _object(bucket, key))]
        if operation in ("CopyObject", "UploadPartCopy"):
            source = params["CopySource"]
            if isinstance(source, str):
                source_bucket, _, source_key = source.lstrip("/").partition("/")
                source_version = "versionId=" in source_key
                source_key = source_key.split("?versionId=")[0]
            else:
                source_bucket, source_key = source["Bucket"], source["Key"]
                source_version = bool(source.get("VersionId"))
            read = "s3:getobjectversion" if source_version else "s3:getobject"
            return [
                ("s3:putobject", _object(bucket, key)),
                (read, _object(arn[source_bucket], source_key)),
            ]
        if operation == "DeleteObject":
            action = "s3:deleteobjectversion" if versioned else "s3:deleteobject"
            return [(action, _object(bucket, key))]
        if operation in ("ListObjectsV2", "ListObjects"):
            return [("s3:listbucket", bucket)]
        if operation == "ListObjectVersions":
            return [("s3:listbucketversions", bucket)]
        if operation == "GetObjectTagging":
            action = "s3:getobjectversiontagging" if versioned else "s3:getobjecttagging"
            return [(action, _object(bucket, key))]
    if service == "dynamodb":
        if operation in ("GetItem", "PutItem", "UpdateItem", "DeleteItem", "Query", "Scan"):
            return [(f"dynamodb:{operation.lower()}", arn[params["TableName"]])]
        if operation == "BatchGetItem":
            return [("dynamodb:batchgetitem", arn[table]) for table in params["RequestItems"]]
        if operation == "TransactWriteItems":
            actions = {
                "Put": "putitem",
                "Update": "updateitem",
                "Delete": "deleteitem",
                "ConditionCheck": "conditioncheckitem",
            }
            return [
                (f"dynamodb:{actions[kind]}", arn[body["TableName"]])
                for item in params["TransactItems"]
                for kind, body in item.items()
            ]
    if service == "sts" and operation == "AssumeRole":
        return [("sts:assumerole", arn[params["RoleArn"]])]
    if service == "sns":
        return _sns_requests(operation, params, arn)
    if service == "rekognition" and operation == "DetectLabels":
        return [("rekognition:detectlabels", "*")]
    pytest.fail(f"no IAM mapping for {service}:{operation}: add it to iam_requests")


def _sns_requests(
    operation: str, params: dict[str, Any], arn: dict[str, str]
) -> list[tuple[str, str]]:
    """SNS: the topic named by the call; in-process request topics map to the deployed
    environment's request-topic prefix (``arn["notify-"]``)."""

    def topic(value: str) -> str:
        if value in arn:
            return arn[value]
        name = value.rsplit(":", 1)[-1]
        assert name.startswith(NOTIFY_TOPIC_PREFIX), f"unexpected topic {value}"
        return arn["notify-"] + name.removeprefix(NOTIFY_TOPIC_PREFIX)

    if operation == "ListTopics":
        return [("sns:listtopics", "*")]
    if operation == "CreateTopic":
        created = topic(params["Name"])
        tagged = [("sns:tagresource", created)] if params.get("Tags") else []
        return [("sns:createtopic", created), *tagged]
    if operation == "ListTagsForResource":
        return [("sns:listtagsforresource", topic(params["ResourceArn"]))]
    if operation in ("Publish", "Subscribe", "ListSubscriptionsByTopic", "DeleteTopic"):
        return [(f"sns:{operation.lower()}", topic(params["TopicArn"]))]
    pytest.fail(f"no IAM mapping for sns:{operation}: add it to _sns_requests")


def _matches(pattern: str, value: str, *, ignore_case: bool) -> bool:
    if ignore_case:
        return fnmatch.fnmatch(value.lower(), pattern.lower())
    regex = "".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern)
    return re.fullmatch(regex, value, flags=re.DOTALL) is not None


def allowed(policy: dict[str, Any], action: str, resource: str) -> bool:
    """IAM's answer for an identity policy with Allow statements only (checked above)."""
    return any(
        any(_matches(a, action, ignore_case=True) for a in _as_list(statement["Action"]))
        and any(_matches(r, resource, ignore_case=False) for r in _as_list(statement["Resource"]))
        for statement in _statements(policy)
        if statement["Effect"] == "Allow"
    )


def replace_with_a_rejected_version(p: Pipeline, invoke: Invoke) -> None:
    """A processed upload overwritten by a rejected one: transform deletes the outputs
    the earlier version left (data, errors report, thumbnails); archive keeps the earlier
    version under superseded/, records it, and withdraws the earlier (labelled) image.
    A third version is overwritten before it is archived: it is archived as superseded.
    Then a late event of a replaced version (stale: transform only looks for a lease it
    might have left) and an upload deleted before its event is served (recorded)."""
    photo = (SAMPLES_DIR / "photos" / "sunset-beach.jpg").read_bytes()
    scans = (SAMPLES_DIR / "retina" / "scans-partly-invalid.json").read_bytes()
    late = []
    for key, good, bad in (
        ("retina/replaced.json", scans, b"[{"),
        ("photos/replaced.jpg", photo, photo[: len(photo) // 2]),
    ):
        for body in (good, bad):
            p.s3.put_object(Bucket=p.raw, Key=key, Body=body)
            late.append(object_event_for(p.s3, p.raw, key))
            invoke("transform", late[-1])
            invoke("archive", object_event_for(p.s3, p.processed, receipt_key(key)))
            if body is photo:
                invoke("tag", object_event_for(p.s3, p.archive, f"images/{key}"))
        # Two more rejected versions: the first is archived (rejected/), the second is
        # replaced in RAW before it is archived; the last one's archiving moves both.
        for body in (bad + b" ", bad + b"  "):
            p.s3.put_object(Bucket=p.raw, Key=key, Body=body)
            invoke("transform", object_event_for(p.s3, p.raw, key))
        invoke("archive", object_event_for(p.s3, p.processed, receipt_key(key)))
        p.s3.put_object(Bucket=p.raw, Key=key, Body=bad + b"   ")
        invoke("transform", object_event_for(p.s3, p.raw, key))
        p.s3.put_object(Bucket=p.raw, Key=key, Body=bad)
        invoke("transform", object_event_for(p.s3, p.raw, key))
        invoke("archive", object_event_for(p.s3, p.processed, receipt_key(key)))
    invoke("transform", late[0])
    p.s3.put_object(Bucket=p.raw, Key="retina/deleted.json", Body=scans)
    deleted = object_event_for(p.s3, p.raw, "retina/deleted.json")
    p.s3.delete_object(Bucket=p.raw, Key="retina/deleted.json")
    invoke("transform", deleted)
    outputs = [
        k
        for k in _keys(p.s3, p.processed)
        if ("replaced" in k or "deleted" in k) and not k.startswith(("receipts/", "versions/"))
    ]
    assert outputs == []


def _removal(p: Pipeline, archive_key: str) -> dict[str, Any]:
    """``aws s3 rm`` of an archived object and the event AWS sends for it (moto sends none
    for a delete marker): ``ObjectRemoved:DeleteMarkerCreated``, the marker's version id."""
    marker = p.s3.delete_object(Bucket=p.archive, Key=archive_key)
    record = s3_record(
        p.archive,
        archive_key,
        event_name="ObjectRemoved:DeleteMarkerCreated",
        version_id=marker.get("VersionId"),
    )
    return sqs_batch(s3_event(record))


def _stale_lease(p: Pipeline, raw_key: str) -> None:
    """A lease a crashed run left, long expired: the next taker reads it and takes over."""
    p.s3.put_object(
        Bucket=p.processed, Key=lease_key(raw_key), Body=b'{"owner": "crashed", "until": 0}'
    )


def remove_archived_inputs(p: Pipeline, invoke: Invoke) -> None:
    """Deletion (sluice.deletion): an archived image, data file, rejected input and
    superseded copy removed from ARCHIVE (tag), and an input deleted from RAW after its
    receipt and before it was archived (archive); each taking over a stale key lease."""
    photo = (SAMPLES_DIR / "photos" / "sunset-beach.jpg").read_bytes()
    scans = (SAMPLES_DIR / "retina" / "scans-partly-invalid.json").read_bytes()
    inputs = {
        "photos/removed.jpg": ("images/photos/removed.jpg", photo),
        "retina/removed.json": ("data/retina/removed.json", scans),
        "removed.txt": ("rejected/removed.txt", b"not a supported type"),
    }
    for key, (archive_key, body) in inputs.items():
        p.s3.put_object(Bucket=p.raw, Key=key, Body=body)
        invoke("transform", object_event_for(p.s3, p.raw, key))
        invoke("archive", object_event_for(p.s3, p.processed, receipt_key(key)))
        if archive_key.startswith("images/"):
            invoke("tag", object_event_for(p.s3, p.archive, archive_key))
        _stale_lease(p, key)
        invoke("tag", _removal(p, archive_key))
    superseded = _keys(p.s3, p.archive, "superseded/")[0]
    invoke("tag", _removal(p, superseded))

    p.s3.put_object(Bucket=p.raw, Key="photos/unarchived.jpg", Body=photo)
    invoke("transform", object_event_for(p.s3, p.raw, "photos/unarchived.jpg"))
    receipt = object_event_for(p.s3, p.processed, receipt_key("photos/unarchived.jpg"))
    p.s3.delete_object(Bucket=p.raw, Key="photos/unarchived.jpg")
    _stale_lease(p, "photos/unarchived.jpg")
    invoke("archive", receipt)
    left = [k for k in _keys(p.s3, p.processed) if "removed" in k or "unarchived" in k]
    assert all(k.startswith("versions/") for k in left), left


def _image_labels(p: Pipeline, archive_key: str) -> list[str]:
    item = p.dynamodb.get_item(
        TableName=p.images_table, Key={"image_id": {"S": image_id(archive_key)}}
    )["Item"]
    return sorted(label["S"] for label in item.get("labels", {}).get("L", []))


def relabel_and_bundle_all(p: Pipeline, invoke: Invoke) -> None:
    """Paths the samples alone do not take: an archived image whose content changes loses
    its old labels (tag removes memberships), and a bundle of images with *all* of two
    labels (bundle reads each label's count first, to start from the smallest)."""
    sunset = (SAMPLES_DIR / "photos" / "sunset-beach.jpg").read_bytes()
    key = "images/photos/night-rotated-8.jpg"
    before = _image_labels(p, key)
    p.s3.put_object(Bucket=p.archive, Key=key, Body=sunset)
    invoke("tag", object_event_for(p.s3, p.archive, key))
    assert set(before) - set(_image_labels(p, key)), "the new content keeps every old label"
    request = {"labels": sorted({*before, *_image_labels(p, key)})[:2], "match": "all"}
    p.s3.put_object(Bucket=p.work, Key="requests/all.json", Body=json.dumps(request).encode())
    invoke("bundle", object_event_for(p.s3, p.work, "requests/all.json"))
    status = json.loads(p.s3.get_object(Bucket=p.work, Key="bundles/all.json")["Body"].read())
    assert status["status"] in ("ready", "empty"), status


def sweep_request_topics(p: Pipeline, invoke: Invoke) -> None:
    """The bundle handler's scheduled sweep, with one request topic left to look at (the
    samples' request topic was delivered and deleted at once: moto confirms subscriptions)."""
    request_topics.open_topic(
        p.sns,
        request_topics.topic_name(NOTIFY_TOPIC_PREFIX, "waiting", "etag"),
        protocol="email",
        endpoint="someone@example.org",
        bundle_id="waiting",
        request_etag="etag",
        expires_at=datetime.now(UTC) + timedelta(days=1),
    )
    invoke("bundle", sqs_batch(golden("eventbridge_scheduled.json")))
    assert len(list(request_topics.topics_with_prefix(p.sns, NOTIFY_TOPIC_PREFIX))) == 1


def drive_api(p: Pipeline, recorder: CallRecorder, monkeypatch: pytest.MonkeyPatch) -> str:
    """Every route of the api once, as an admin, recording its calls as the api's.

    A presigned URL is no call of the api's, but S3 authorises its use as the signer's:
    each URL handed out is recorded as the call its client will make.
    """
    iam = boto3.client("iam", region_name=REGION)
    role = iam.create_role(RoleName="sluice-test-upload", AssumeRolePolicyDocument="{}")
    monkeypatch.setenv("UPLOAD_ROLE_ARN", role["Role"]["Arn"])
    api = ApiClient(api_handler())
    recorder.running = "api"
    try:
        image = {"filename": "a.jpg", "content_type": "image/jpeg", "size": 10}
        signed = [api.call("POST", "/uploads", body=image, claims=ADMIN).json()]
        multipart = api.call("POST", "/uploads/multipart", body=image, claims=ADMIN).json()
        signed.append(multipart)
        upload_id = multipart["upload_id"]
        api.call("DELETE", f"/uploads/multipart/{upload_id}", claims=ADMIN)
        parts = {"parts": [{"part_number": 1, "etag": "x"}]}
        api.call("POST", f"/uploads/multipart/{upload_id}/complete", body=parts, claims=ADMIN)
        api.call("POST", "/uploads/credentials", body=image, claims=ADMIN)
        images = api.call("GET", "/images", claims=ADMIN).json()["images"]
        label = api.call("GET", "/labels", claims=ADMIN).json()["labels"][0]["label"]
        api.call("GET", "/images", query={"label": label}, claims=ADMIN)
        detail = api.call("GET", f"/images/{images[0]['id']}", claims=ADMIN).json()
        api.call("DELETE", f"/images/{images[0]['id']}", claims=ADMIN)
        bundle = api.call("POST", "/bundles", body={"labels": [label]}, claims=ADMIN).json()
        api.call("GET", f"/bundles/{bundle['bundle_id']}", claims=ADMIN)
        api.call("GET", "/bundles/everything", claims=ADMIN)
        api.call("GET", "/inputs", query={"status": "rejected"}, claims=ADMIN)
        api.call("GET", f"/inputs/{encoded('photos/sunset-beach.jpg')}", claims=ADMIN)
        data = api.call("GET", f"/inputs/{encoded(DATA_INPUT)}", claims=ADMIN).json()
        api.call("GET", f"/inputs/{encoded(signed[0]['key'])}", claims=ADMIN)
    finally:
        recorder.running = None
    assert recorder.calls is not None
    for upload in signed:
        recorder.calls.append(("api", "s3", "PutObject", {"Bucket": p.raw, "Key": upload["key"]}))
    links = [detail["original_url"], *(t["url"] for t in detail["thumbnails"].values())]
    links += [data["output_url"], data["errors_report_url"]]
    buckets = (p.raw, p.processed, p.archive, p.work)
    for link in links:
        bucket, key = signed_object(link, buckets)
        recorder.calls.append(("api", "s3", "GetObject", {"Bucket": bucket, "Key": key}))
    return str(role["Role"]["Arn"])


DATA_INPUT = "retina/scans-partly-invalid.json"
"""A sample data file with invalid records: its receipt links an output and a report."""


def signed_object(url: str, buckets: tuple[str, ...]) -> tuple[str, str]:
    """The bucket and key a presigned URL names (virtual-hosted or path style)."""
    parts = urlsplit(url)
    path = unquote(parts.path.lstrip("/"))
    for bucket in buckets:
        if parts.netloc.startswith(f"{bucket}."):
            return bucket, path
        if path.startswith(f"{bucket}/"):
            return bucket, path.removeprefix(f"{bucket}/")
    raise AssertionError(f"a link to none of the pipeline's buckets: {parts.netloc}")


def _keys(s3: Any, bucket: str, prefix: str = "") -> list[str]:
    listing = s3.list_objects_v2(Bucket=bucket, Prefix=prefix)
    return [item["Key"] for item in listing.get("Contents", [])]


@pytest.fixture
def recorder(pipeline: Pipeline, monkeypatch: pytest.MonkeyPatch) -> CallRecorder:
    """A fresh default session (the handlers' clients come from it) with the recorder on."""
    monkeypatch.setattr(boto3, "DEFAULT_SESSION", None)
    boto3.setup_default_session(region_name=REGION)
    assert boto3.DEFAULT_SESSION is not None
    calls = CallRecorder(calls=[])
    boto3.DEFAULT_SESSION.events.register("before-parameter-build", calls)
    return calls


UNUSED_BUT_NEEDED: dict[tuple[str, str], str] = {
    # Keyed by (function or "*", action): grants that no recorded call of the handler's
    # own code uses, each with the reason it is still needed. Anything else unused fails.
    ("*", "sqs:receivemessage"): "the Lambda service polls the queue with the function's role",
    ("*", "sqs:deletemessage"): "the Lambda service deletes what the batch response keeps",
    ("*", "sqs:getqueueattributes"): "the event source mapping reads the queue's attributes",
    ("*", "sqs:changemessagevisibility"): "the Lambda service returns failed messages",
    ("*", "logs:createlogstream"): "the Lambda runtime ships the function's output",
    ("*", "logs:putlogevents"): "the Lambda runtime ships the function's output",
    ("*", "kms:decrypt"): "no call of its own: S3 and SQS use the key with the caller's"
    " permissions (SSE-KMS objects and queues)",
    ("*", "kms:generatedatakey"): "no call of its own: S3 uses the key with the caller's"
    " permissions to encrypt what the handler writes",
    ("*", "s3:listbucket"): "no call of its own: without it a missing key reads as 403, not"
    " the 404 that handlers treat as 'gone'",
    ("*", "s3:abortmultipartupload"): "called only when a streamed write or a multipart"
    " copy (objects over 5 GiB) fails",
    ("archive", "s3:deleteobject"): "on RAW, called only when the bucket has no versions"
    " (delete IfMatch); the versioned RAW here deletes by version id",
    ("tag", "dynamodb:deleteitem"): "on the images table, called only when a labelling run"
    " finds its image withdrawn between its first look and its lease (a race)",
    ("transform", "s3:listbucketversions"): "called only when a version deleted from RAW"
    " while it was transformed wrote over an archived version's outputs (a race), and on"
    " RAW only for a deleted version whose event has no version id (AWS's have one;"
    " tests/integration/test_deletion.py)",
    ("transform", "s3:getobjectversion"): "the same race: the overwritten outputs are"
    " copied back from their own versions",
    ("transform", "dynamodb:deleteitem"): "on the images table, called only when a run died"
    " between the image's item and its receipt and the object was then deleted from RAW"
    " (tests/integration/test_versions.py)",
}


def _drive_handlers(pipeline: Pipeline, recorder: CallRecorder, monkeypatch: Any) -> None:
    """The samples and the corpus through the four handlers in process, recorded."""
    monkeypatch.setenv("THUMBNAIL_SIZES", "64,128")
    handlers: dict[str, ModuleType] = {name: load_handler(name) for name in FUNCTIONS}

    def invoke(name: str, event: dict[str, Any]) -> None:
        recorder.running = name
        try:
            response = handlers[name].handler(event, FakeContext())
        finally:
            recorder.running = None
        assert response == {"batchItemFailures": []}, (name, response)

    drive_pipeline(pipeline, invoke, pipeline_inputs())
    replace_with_a_rejected_version(pipeline, invoke)
    remove_archived_inputs(pipeline, invoke)
    relabel_and_bundle_all(pipeline, invoke)
    sweep_request_topics(pipeline, invoke)


def _requests_all_allowed(
    deployed: Deployed, recorder: CallRecorder, arn: dict[str, str]
) -> dict[str, set[tuple[str, str]]]:
    """Each recorded call's IAM requests, by who made it; fails on any the policy denies."""
    assert recorder.calls
    requested: dict[str, set[tuple[str, str]]] = {}
    denied: dict[tuple[str, str, str], str] = {}
    for function, service, operation, params in recorder.calls:
        for action, resource in iam_requests(service, operation, params, arn):
            requested.setdefault(function, set()).add((action, resource))
            if not allowed(deployed.policies[function], action, resource):
                # One example resource per (function, operation, action) keeps it readable.
                denied.setdefault((function, f"{service}:{operation}", action), resource)
    assert denied == {}, "calls the deployed policies deny:\n" + "\n".join(
        f"{function} {operation} needs {action} on {resource}"
        for (function, operation, action), resource in sorted(denied.items())
    )
    return requested


def _arns(deployed: Deployed, pipeline: Pipeline) -> dict[str, str]:
    """The in-process names of the pipeline's resources -> their deployed ARNs."""
    return {
        pipeline.raw: deployed.buckets["raw"],
        pipeline.processed: deployed.buckets["processed"],
        pipeline.archive: deployed.buckets["archive"],
        pipeline.work: deployed.buckets["work"],
        pipeline.images_table: deployed.images_table,
        pipeline.labels_table: deployed.labels_table,
        pipeline.topic_arn: deployed.bundle_topic,
        "notify-": deployed.request_topics.removesuffix("*"),
    }


def test_function_policies_grant_exactly_the_calls_the_handlers_make(
    deployed: Deployed,
    pipeline: Pipeline,
    recorder: CallRecorder,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    _drive_handlers(pipeline, recorder, monkeypatch)
    requested = _requests_all_allowed(deployed, recorder, _arns(deployed, pipeline))
    assert set(requested) == set(FUNCTIONS)
    unused = sorted(
        (function, action, pattern)
        for function in FUNCTIONS
        for action, pattern in deployed.grants(function)
        if (function, action) not in UNUSED_BUT_NEEDED
        and ("*", action) not in UNUSED_BUT_NEEDED
        and not any(
            used == action and _matches(pattern, resource, ignore_case=False)
            for used, resource in requested[function]
        )
    )
    assert unused == [], "grants no call of the handler uses:\n" + "\n".join(
        f"{function} {action} on {pattern}" for function, action, pattern in unused
    )


@NEEDS_API
def test_the_api_policy_allows_every_call_the_api_makes(
    deployed: Deployed,
    pipeline: Pipeline,
    recorder: CallRecorder,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Every route once, on the library the handlers built (presigned URLs count as the
    calls their clients will make, authorised as the api's)."""
    _drive_handlers(pipeline, recorder, monkeypatch)
    upload_role = drive_api(pipeline, recorder, monkeypatch)
    arn = _arns(deployed, pipeline) | {upload_role: deployed.upload_role}
    requested = _requests_all_allowed(deployed, recorder, arn)
    assert set(requested) == {*FUNCTIONS, "api"}


# --- buckets -------------------------------------------------------------------------------


def _by_bucket(values: dict[str, Any], kind: str) -> dict[str, dict[str, Any]]:
    """The pipeline's data buckets (module.bucket), by ``<environment>/<bucket>``."""
    return {
        # A resource whose every value is known only after apply has no "values" in a plan.
        f"{_key_in(r['address'], 'pipeline')}/{_key_in(r['address'], 'bucket')}": r.get(
            "values", {}
        )
        for r in _of_type(values, kind)
        if "module.bucket[" in r["address"]
    }


def _web_bucket(values: dict[str, Any], kind: str) -> dict[str, dict[str, Any]]:
    """The web app's bucket (module.web), by environment."""
    return {
        _key_in(r["address"], "pipeline"): r.get("values", {})
        for r in _of_type(values, kind)
        if ".module.web[" in r["address"]
    }


@pytest.mark.parametrize("view", [pytest.param("local_state", marks=NEEDS_API), "prod_plan"])
def test_the_web_apps_bucket_is_private_encrypted_and_versioned(
    view: str, views: TerraformViews
) -> None:
    document = getattr(views, view)
    values = document["values"] if view == "local_state" else document["planned_values"]
    buckets = _web_bucket(values, "aws_s3_bucket")
    assert buckets, "no web app bucket"
    blocks = _web_bucket(values, "aws_s3_bucket_public_access_block")
    encryption = _web_bucket(values, "aws_s3_bucket_server_side_encryption_configuration")
    versioning = _web_bucket(values, "aws_s3_bucket_versioning")
    ownership = _web_bucket(values, "aws_s3_bucket_ownership_controls")
    settings = (
        "block_public_acls",
        "block_public_policy",
        "ignore_public_acls",
        "restrict_public_buckets",
    )
    for env in buckets:
        assert all(blocks[env][name] is True for name in settings), env
        assert encryption[env]["rule"], env
        (config,) = versioning[env]["versioning_configuration"]
        assert config["status"] == "Enabled", env
        assert ownership[env]["rule"][0]["object_ownership"] == "BucketOwnerEnforced", env


@pytest.mark.parametrize("view", ["local_state", "prod_plan"])
def test_every_bucket_is_private_encrypted_and_versioned(view: str, views: TerraformViews) -> None:
    document = getattr(views, view)
    values = document["values"] if view == "local_state" else document["planned_values"]
    buckets = _by_bucket(values, "aws_s3_bucket")
    assert len(buckets) == len(BUCKETS)
    blocks = _by_bucket(values, "aws_s3_bucket_public_access_block")
    encryption = _by_bucket(values, "aws_s3_bucket_server_side_encryption_configuration")
    versioning = _by_bucket(values, "aws_s3_bucket_versioning")
    ownership = _by_bucket(values, "aws_s3_bucket_ownership_controls")
    settings = ("block_public_acls", "block_public_policy", "ignore_public_acls")
    for bucket in buckets:
        assert all(blocks[bucket][name] is True for name in settings), bucket
        assert blocks[bucket]["restrict_public_buckets"] is True, bucket
        (rule,) = encryption[bucket]["rule"]
        (default,) = rule["apply_server_side_encryption_by_default"]
        if view == "prod_plan":
            # Production's key is created by the same apply: the algorithm follows from
            # its ARN, so the plan only knows it then. The key must be in the plan.
            assert default.get("sse_algorithm") in (None, "aws:kms"), bucket
            assert _prod_data_key_planned(document), bucket
        else:
            assert default["sse_algorithm"] in ("AES256", "aws:kms", "aws:kms:dsse"), bucket
        (config,) = versioning[bucket]["versioning_configuration"]
        assert config["status"] == "Enabled", bucket
        assert ownership[bucket]["rule"][0]["object_ownership"] == "BucketOwnerEnforced"


def _prod_data_key_planned(plan: dict[str, Any]) -> bool:
    return any(
        change["address"] == 'module.pipeline["prod"].aws_kms_key.data[0]'
        and change["change"]["actions"] == ["create"]
        and change["change"]["after"]["enable_key_rotation"] is True
        for change in plan["resource_changes"]
    )


def test_every_production_bucket_denies_requests_without_tls(views: TerraformViews) -> None:
    plan = views.prod_plan
    buckets = _by_bucket(plan["planned_values"], "aws_s3_bucket")
    policies = _by_bucket(plan["planned_values"], "aws_s3_bucket_policy")
    assert set(policies) == set(buckets)
    # The policy documents are read at apply time; the plan shows their statements.
    documents = {
        f"{_key_in(c['address'], 'pipeline')}/{_key_in(c['address'], 'bucket')}": c["change"]
        for c in plan["resource_changes"]
        if c["type"] == "aws_iam_policy_document" and "module.bucket[" in c["address"]
    }
    assert set(documents) == set(buckets)
    for bucket, change in documents.items():
        (statement,) = change["after"]["statement"]
        assert statement["effect"] == "Deny", bucket
        assert statement["actions"] == ["s3:*"], bucket
        assert statement["principals"] == [{"identifiers": ["*"], "type": "*"}], bucket
        assert statement["condition"] == [
            {"test": "Bool", "values": ["false"], "variable": "aws:SecureTransport"}
        ], bucket
        # Both the bucket and its objects (known after apply: two resources).
        assert change["after_unknown"]["statement"][0]["resources"] == [True, True], bucket
    module_calls = plan["configuration"]["root_module"]["module_calls"]["pipeline"]["module"]
    s3_module = module_calls["module_calls"]["bucket"]["module"]
    (document,) = [
        r for r in s3_module["resources"] if r["address"] == "data.aws_iam_policy_document.this"
    ]
    resources = document["expressions"]["statement"][0]["resources"]["references"]
    assert "aws_s3_bucket.this.arn" in resources


def test_only_the_emulator_environment_turns_the_tls_policy_off() -> None:
    settings = {
        path.name: re.findall(r"deny_insecure_transport\s*=\s*(\w+)", path.read_text())
        for path in sorted((REPO_ROOT / "env").glob("*.tfvars"))
    }
    assert settings.pop("local.tfvars") == ["false"]
    assert settings and all(values in ([], ["true"]) for values in settings.values())


def test_production_policies_use_the_wildcard_only_for_actions_without_resources(
    views: TerraformViews,
) -> None:
    # Each handler's own grants are the pipeline's document named after it (passed to its
    # lambda module as policy_json); the module's statements name only its queue, log
    # group and key, so they never hold a wildcard (the deployed policies are checked whole
    # above).
    changes = {
        _function_of(c["address"]): c["change"]
        for c in views.prod_plan["resource_changes"]
        if c["type"] == "aws_iam_policy_document"
        and c.get("module_address") == 'module.pipeline["prod"]'
    }
    wildcards = {
        (function, action)
        for function, change in changes.items()
        if function in FUNCTIONS
        for statement in change["after"]["statement"]
        if "*" in (statement.get("resources") or [])
        for action in statement["actions"]
    }
    assert wildcards == {("tag", "rekognition:DetectLabels"), ("bundle", "sns:ListTopics")}
    assert all(a.lower() in WILDCARD_RESOURCE_ACTIONS for _, a in wildcards)


def _function_of(address: str) -> str:
    return address.rsplit(".", 1)[-1].split("[")[0]


# --- presigned links -------------------------------------------------------------------------


def test_a_bundle_link_lifetime_over_seven_days_fails_the_plan(views: TerraformViews) -> None:
    assert "bundle_url_ttl_seconds must be between 1 and 604800" in views.ttl_plan_error


def test_the_deployed_bundle_link_lifetime_is_within_seven_days(views: TerraformViews) -> None:
    values = views.local_state["values"]
    (bundle,) = [
        r
        for r in _of_type(values, "aws_lambda_function")
        if r["values"]["function_name"].endswith("-bundle")
    ]
    ttl = int(bundle["values"]["environment"][0]["variables"]["BUNDLE_URL_TTL_SECONDS"])
    assert 1 <= ttl <= MAX_URL_TTL_SECONDS


# --- the environment's key, ARCHIVE retention ---------------------------------------------


def test_the_environment_key_encrypts_buckets_tables_and_queues(
    views: TerraformViews, deployed: Deployed
) -> None:
    values = views.local_state["values"]
    key = deployed.data_key
    (key_values,) = [r["values"] for r in _of_type(values, "aws_kms_key") if r["name"] == "data"]
    assert key_values["enable_key_rotation"] is True
    statements = {s["Sid"]: s for s in _statements(json.loads(key_values["policy"]))}
    # S3's notifications and the bundle sweep's schedule (EventBridge) reach the queues.
    senders = {"S3NotifiesEncryptedQueues": "s3", "EventBridgeSchedulesEncryptedQueues": "events"}
    assert set(statements) == {"AccountAdministers", *senders}
    admin = statements["AccountAdministers"]
    account = deployed.queues["transform"].split(":")[4]  # the emulator's account
    assert admin["Principal"] == {"AWS": f"arn:aws:iam::{account}:root"}
    for sid, service in senders.items():
        sender = statements[sid]
        assert sender["Principal"] == {"Service": f"{service}.amazonaws.com"}
        assert sorted(_as_list(sender["Action"])) == ["kms:Decrypt", "kms:GenerateDataKey"]
        assert sender["Condition"] == {"StringEquals": {"aws:SourceAccount": account}}

    encryption = _by_bucket(values, "aws_s3_bucket_server_side_encryption_configuration")
    assert len(encryption) == len(BUCKETS)
    for bucket, configuration in encryption.items():
        (rule,) = configuration["rule"]
        assert rule["bucket_key_enabled"] is True, bucket
        assert rule["apply_server_side_encryption_by_default"] == [
            {"kms_master_key_id": key, "sse_algorithm": "aws:kms"}
        ], bucket
    tables = _of_type(values, "aws_dynamodb_table")
    assert [t["values"]["server_side_encryption"][0]["kms_key_arn"] for t in tables] == [key] * 2
    queues = {r["values"]["name"]: r["values"] for r in _of_type(values, "aws_sqs_queue")}
    assert set(queues) == {f"sluice-local-{f}" for f in FUNCTIONS} | {"sluice-local-dlq"}
    assert {name: q["kms_master_key_id"] for name, q in queues.items()} == dict.fromkeys(
        queues, key
    )

    # Each role: that key only, and GenerateDataKey only where the handler writes objects
    # (every queue handler does: tag writes the version ledger when an input is removed).
    for function in FUNCTIONS:
        kms = {(a, r) for a, r in deployed.grants(function) if a.startswith("kms:")}
        assert kms == {("kms:decrypt", key), ("kms:generatedatakey", key)}


def test_only_production_turns_the_environment_key_on() -> None:
    settings = {
        path.name: re.findall(r"kms_cmk_enabled\s*=\s*(\w+)", path.read_text())
        for path in sorted((REPO_ROOT / "env").glob("*.tfvars"))
    }
    assert settings["prod.tfvars"] == ["true"]
    assert settings["local.tfvars"] == ["false"]


def _noncurrent_days(values: dict[str, Any]) -> dict[str, int]:
    return {
        bucket.split("/")[1]: rule["noncurrent_version_expiration"][0]["noncurrent_days"]
        for bucket, configuration in _by_bucket(
            values, "aws_s3_bucket_lifecycle_configuration"
        ).items()
        for rule in configuration["rule"]
        if rule["id"] == "expire-noncurrent-versions"
    }


def test_archive_keeps_noncurrent_versions_a_year_in_production(views: TerraformViews) -> None:
    assert _noncurrent_days(views.prod_plan["planned_values"]) == {
        "raw": 30,
        "processed": 30,
        "archive": 365,
        "work": 30,
    }
    assert set(_noncurrent_days(views.local_state["values"]).values()) == {30}


def test_archive_object_lock_is_governance_mode_and_only_on_archive(
    views: TerraformViews,
) -> None:
    values = views.local_state["values"]
    locked = {b: v["object_lock_enabled"] for b, v in _by_bucket(values, "aws_s3_bucket").items()}
    assert locked == {f"local/{b}": b == "archive" for b in BUCKETS}
    (configuration,) = _by_bucket(values, "aws_s3_bucket_object_lock_configuration").values()
    (rule,) = configuration["rule"]
    (retention,) = rule["default_retention"]
    assert (retention["mode"], retention["days"]) == (
        "GOVERNANCE",
        PRODUCTION_SWITCHES["archive_object_lock_days"],
    )
    # Off unless asked: production's plan locks nothing.
    prod = _by_bucket(views.prod_plan["planned_values"], "aws_s3_bucket")
    assert {v["object_lock_enabled"] for v in prod.values()} == {False}
    assert (
        _by_bucket(views.prod_plan["planned_values"], "aws_s3_bucket_object_lock_configuration")
        == {}
    )
