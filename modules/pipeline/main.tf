# One sluice environment: four buckets, four handlers fed by their queues, the tables,
# topics, dead-letter queue and alarms (docs/contracts.md names every piece).

data "aws_caller_identity" "current" {}

data "aws_region" "current" {}

data "aws_partition" "current" {}

locals {
  name       = "${var.name_prefix}-${var.environment}"
  account_id = data.aws_caller_identity.current.account_id
  region     = data.aws_region.current.name
  partition  = data.aws_partition.current.partition
  tags       = merge(var.tags, { Environment = var.environment })

  # Built outside Terraform by scripts/build_artifacts.py (docs/contracts.md, "Build artifacts").
  code_zip_path  = "${var.artifacts_dir}/sluice-code.zip"
  layer_zip_path = "${var.artifacts_dir}/sluice-layer-${var.architecture}.zip"

  # Bucket names are global: the account and region make them unique without a random suffix.
  bucket_names = {
    for bucket in ["raw", "processed", "archive", "work"] :
    bucket => "${local.name}-${bucket}-${local.account_id}-${local.region}"
  }

  # What triggers which handler (docs/contracts.md, "Buckets and key layout"). One entry
  # list per bucket becomes that bucket's single notification configuration.
  notifications = {
    raw       = [{ id = "transform-all-objects", function = "transform", events = ["s3:ObjectCreated:*"], filter_prefix = "" }]
    processed = [{ id = "archive-receipts", function = "archive", events = ["s3:ObjectCreated:*"], filter_prefix = var.key_prefixes.processed.receipts }]
    # Removing an archived input removes what it owns (decision 30): the tag handler owns
    # the label counts and the image lease, and never writes ARCHIVE.
    archive = concat(
      [{ id = "tag-images", function = "tag", events = ["s3:ObjectCreated:*"], filter_prefix = var.key_prefixes.archive.images }],
      [for name, prefix in var.key_prefixes.archive : {
        id = "tag-removed-${name}", function = "tag", events = ["s3:ObjectRemoved:*"], filter_prefix = prefix
      }],
    )
    work = [{ id = "bundle-requests", function = "bundle", events = ["s3:ObjectCreated:*"], filter_prefix = var.key_prefixes.work.requests }]
  }

  # Buckets allowed to send to each handler's queue.
  queue_sources = {
    for function in keys(local.function_defaults) : function => distinct([
      for bucket, entries in local.notifications : module.bucket[bucket].bucket_arn
      if anytrue([for entry in entries : entry.function == function])
    ])
  }

  function_defaults = {
    transform = { memory_size = 1024, timeout = 120, batch_size = 5, maximum_batching_window_in_seconds = 0, maximum_concurrency = 10 }
    archive   = { memory_size = 256, timeout = 60, batch_size = 10, maximum_batching_window_in_seconds = 0, maximum_concurrency = 10 }
    tag       = { memory_size = 256, timeout = 60, batch_size = 10, maximum_batching_window_in_seconds = 0, maximum_concurrency = 2 }
    bundle    = { memory_size = 1024, timeout = 900, batch_size = 1, maximum_batching_window_in_seconds = 0, maximum_concurrency = 2 }
  }

  function_settings = {
    for function, defaults in local.function_defaults : function => merge(
      defaults,
      { for key, value in try(var.functions[function], {}) : key => value if value != null },
    )
  }

  # Cold storage of archived images (var.archive_cold_storage): the bucket's tiering or
  # transition, and what the bundle handler must know to restore (sluice.restores).
  cold_storage = var.archive_cold_storage == null ? "none" : var.archive_cold_storage.mode
  # One topic per bundle request that names a recipient, created and deleted by the bundle
  # handler (sluice.request_topics); its role may touch no other topic it did not create.
  request_topic_prefix = "${local.name}-notify-"

  # The handlers' item counts (src/sluice/metrics.py): the namespace is set here and
  # passed to the functions; tests/unit/test_metrics.py ties these names to the Python ones.
  metrics = {
    namespace          = "sluice"
    failed_items       = "ItemsFailed"
    function_dimension = "service"
  }

  # The api function (invoked by API Gateway, not by a queue): settings from var.functions.api.
  api_function = merge(
    { memory_size = 512, timeout = 29 },
    { for key, value in try(var.functions["api"], {}) : key => value if value != null && contains(["memory_size", "timeout"], key) },
  )

  common_environment = {
    SLUICE_ENV           = var.environment
    RAW_BUCKET           = module.bucket["raw"].bucket_name
    PROCESSED_BUCKET     = module.bucket["processed"].bucket_name
    ARCHIVE_BUCKET       = module.bucket["archive"].bucket_name
    WORK_BUCKET          = module.bucket["work"].bucket_name
    IMAGES_TABLE         = module.images_table.table_name
    LABELS_TABLE         = module.labels_table.table_name
    POWERTOOLS_LOG_LEVEL = var.log_level
  }

  # DATASETS is set only when the environment names its datasets: the default is the
  # handlers' own (src/sluice/datasets/datasets.json), defined once. The transform validates
  # by it and the api places data uploads under its prefixes, so both get the same value.
  datasets_json = var.datasets == null ? null : jsonencode(var.datasets)

  # The variables each function reads beside the common ones. Their names, defaults and
  # bounds are src/sluice/settings.py's (one class per function); the static test
  # tests/unit/test_settings_contract.py fails when these names and that module's differ.
  # A null value is left unset, so the function uses its default.
  function_variables = {
    transform = {
      THUMBNAIL_SIZES   = join(",", [for size in var.thumbnail_sizes : tostring(size)])
      THUMBNAIL_FORMAT  = var.thumbnail_format
      THUMBNAIL_QUALITY = tostring(var.thumbnail_quality)
      MAX_IMAGE_PIXELS  = tostring(var.max_image_pixels)
      MAX_IMAGE_BYTES   = tostring(var.max_image_bytes)
      MAX_DATA_BYTES    = tostring(var.max_data_bytes)
      DATASETS          = local.datasets_json
    }
    archive = {
      ARCHIVE_STORAGE_CLASS = var.archive_storage_class
    }
    tag = {
      LABELER              = var.labeler
      LABEL_MIN_CONFIDENCE = tostring(var.label_min_confidence)
      LABEL_MAX_LABELS     = tostring(var.label_max_labels)
    }
    bundle = {
      BUNDLE_TOPIC_ARN       = aws_sns_topic.bundles.arn
      BUNDLE_URL_TTL_SECONDS = tostring(var.bundle_url_ttl_seconds)
      BUNDLE_EXPIRATION_DAYS = tostring(var.bundle_expiration_days)
      NOTIFY_TOPIC_PREFIX    = local.request_topic_prefix
      ARCHIVE_COLD_STORAGE   = local.cold_storage
      # Unset (null) without cold storage: the handler's defaults, never used then.
      RESTORE_TIER = var.archive_cold_storage == null ? null : var.archive_cold_storage.restore_tier
      RESTORE_DAYS = var.archive_cold_storage == null ? null : tostring(var.archive_cold_storage.restore_days)
    }
    api = {
      UPLOAD_ROLE_ARN        = local.upload_role_arn
      MAX_UPLOAD_BYTES       = tostring(var.max_upload_bytes)
      MAX_DATA_BYTES         = tostring(var.max_data_bytes)
      UPLOAD_URL_TTL_SECONDS = tostring(var.upload_url_ttl_seconds)
      LINK_TTL_SECONDS       = tostring(var.link_ttl_seconds)
      DATASETS               = local.datasets_json
    }
  }

  function_environment = {
    for function, variables in local.function_variables : function => merge(
      local.common_environment,
      { for name, value in variables : name => value if value != null },
    )
  }
}

# --- Encryption keys -----------------------------------------------------------------------

# With kms_cmk_enabled the environment's data at rest (buckets, tables, queues) is under a
# key of its own: its use shows in CloudTrail, it can be disabled to cut off all access, and
# rotation is on. CloudWatch alarms cannot publish to a topic encrypted with the AWS managed
# SNS key (its key policy does not admit cloudwatch.amazonaws.com), so the alerts topic has
# a key of its own too. Each key's policy only makes the account root its administrator,
# which is what lets IAM policies grant its use (each function role gets Decrypt for its
# queue from modules/lambda, Decrypt/GenerateDataKey for the buckets from policies.tf), and
# lets the AWS services below use it for this account (aws:SourceAccount). DynamoDB uses
# the data key through grants it creates itself.
locals {
  key_policies = {
    for key, policy in {
      data = {
        actions = ["kms:Decrypt", "kms:GenerateDataKey"]
        # By statement id: S3 encrypts the event notifications it sends to the encrypted
        # queues, and the sweep rule its scheduled events to the bundle queue.
        services = { EventBridgeSchedulesEncryptedQueues = "events", S3NotifiesEncryptedQueues = "s3" }
      }
      alerts = {
        actions  = ["kms:Decrypt", "kms:GenerateDataKey*"]
        services = { CloudWatchAlarmsPublish = "cloudwatch" }
      }
    } : key => policy if key != "data" || var.kms_cmk_enabled
  }
}

data "aws_iam_policy_document" "key" {
  for_each = local.key_policies

  #checkov:skip=CKV_AWS_109:A key policy's Resource "*" means this key only; the account root keeps administration as AWS requires.
  #checkov:skip=CKV_AWS_111:A key policy's Resource "*" means this key only.
  #checkov:skip=CKV_AWS_356:A key policy's Resource "*" means this key only.
  statement {
    sid       = "AccountAdministers"
    actions   = ["kms:*"]
    resources = ["*"]

    principals {
      type        = "AWS"
      identifiers = ["arn:${local.partition}:iam::${local.account_id}:root"]
    }
  }

  dynamic "statement" {
    for_each = each.value.services

    content {
      sid       = statement.key
      actions   = each.value.actions
      resources = ["*"]

      principals {
        type        = "Service"
        identifiers = ["${statement.value}.amazonaws.com"]
      }

      condition {
        test     = "StringEquals"
        variable = "aws:SourceAccount"
        values   = [local.account_id]
      }
    }
  }
}

resource "aws_kms_key" "data" {
  count = var.kms_cmk_enabled ? 1 : 0

  description             = "Encrypts the ${local.name} buckets, tables and queues."
  enable_key_rotation     = true
  deletion_window_in_days = 30
  policy                  = data.aws_iam_policy_document.key["data"].json
  tags                    = local.tags

  lifecycle {
    precondition {
      condition     = var.kms_key_arn == null
      error_message = "Set either kms_cmk_enabled (the environment creates its key) or kms_key_arn (an existing key), not both."
    }
  }
}

resource "aws_kms_alias" "data" {
  count = var.kms_cmk_enabled ? 1 : 0

  name          = "alias/${local.name}-data"
  target_key_id = aws_kms_key.data[0].key_id
}

locals {
  # Buckets and tables: the environment's own key, else the key passed in, else AWS managed.
  data_key_arn = var.kms_cmk_enabled ? aws_kms_key.data[0].arn : var.kms_key_arn

  # Queues only use the environment's own key: S3 must be able to encrypt the notifications
  # it sends, which needs a statement in the key policy that only this module controls.
  queue_key_arn = var.kms_cmk_enabled ? aws_kms_key.data[0].arn : null
}

# --- Storage -------------------------------------------------------------------------------

module "bucket" {
  source   = "../s3"
  for_each = local.bucket_names

  bucket_name             = each.value
  kms_key_arn             = local.data_key_arn
  deny_insecure_transport = var.deny_insecure_transport
  force_destroy           = var.force_destroy
  tags                    = local.tags

  # ARCHIVE keeps overwritten or deleted originals as long as the environment says (and
  # may lock them); the other buckets keep the module's default.
  noncurrent_version_expiration_days = each.key == "archive" ? var.archive_noncurrent_retention_days : null
  object_lock_days                   = each.key == "archive" ? var.archive_object_lock_days : null

  # Bundles are downloads with a bounded lifetime, and their requests (which may name a
  # recipient) go with them; nothing else expires.
  expiring_prefixes = each.key == "work" ? {
    (var.key_prefixes.work.bundles)  = var.bundle_expiration_days
    (var.key_prefixes.work.requests) = var.bundle_expiration_days
  } : {}

  # Archived images may go cold (var.archive_cold_storage); nothing else does.
  intelligent_tiering = each.key == "archive" && local.cold_storage == "intelligent_tiering" ? {
    prefix                   = var.key_prefixes.archive.images
    archive_access_days      = var.archive_cold_storage.archive_access_days
    deep_archive_access_days = var.archive_cold_storage.deep_archive_access_days
  } : null
  transitions = each.key == "archive" && local.cold_storage == "glacier" ? {
    (var.key_prefixes.archive.images) = { days = var.archive_cold_storage.glacier_after_days, storage_class = "GLACIER" }
  } : {}

  # Browsers upload to RAW with presigned PUT or POST and read the ETag to confirm.
  cors_rules = each.key == "raw" && length(var.raw_cors_allowed_origins) > 0 ? [{
    allowed_methods = ["PUT", "POST"]
    allowed_origins = var.raw_cors_allowed_origins
    expose_headers  = ["ETag"]
  }] : []
}

module "images_table" {
  source = "../dynamodb"

  table_name                  = "${local.name}-images"
  hash_key                    = "image_id"
  kms_key_arn                 = local.data_key_arn
  deletion_protection_enabled = !var.force_destroy
  tags                        = local.tags
}

module "labels_table" {
  source = "../dynamodb"

  table_name                  = "${local.name}-labels"
  hash_key                    = "pk"
  range_key                   = "sk"
  kms_key_arn                 = local.data_key_arn
  deletion_protection_enabled = !var.force_destroy
  tags                        = local.tags
}

# --- Handlers ------------------------------------------------------------------------------

module "layer" {
  source = "../layers"

  layer_name   = "${local.name}-dependencies"
  description  = "Runtime dependencies of the sluice handlers (layers/requirements.txt)."
  zip_path     = local.layer_zip_path
  architecture = var.architecture
}

resource "aws_sqs_queue" "dead_letter" {
  name                      = "${local.name}-dlq"
  message_retention_seconds = 1209600 # 14 days, the SQS maximum: time to inspect and redrive.
  tags                      = local.tags

  sqs_managed_sse_enabled           = local.queue_key_arn == null ? true : null
  kms_master_key_id                 = local.queue_key_arn
  kms_data_key_reuse_period_seconds = local.queue_key_arn == null ? null : 300
}

module "function" {
  source   = "../lambda"
  for_each = local.function_settings

  function_name = "${local.name}-${each.key}"
  handler       = "sluice.handlers.${each.key}.handler"
  code_zip_path = local.code_zip_path
  layer_arns    = [module.layer.layer_version_arn]
  architecture  = var.architecture
  memory_size   = each.value.memory_size
  timeout       = each.value.timeout
  tags          = local.tags

  # The role, with its queue, log group and queue key; the rest of its grants: policies.tf.
  role_description = "Execution role of the sluice ${each.key} handler."
  policy_json      = local.handler_policies[each.key]

  environment_variables = merge(
    local.function_environment[each.key],
    {
      POWERTOOLS_SERVICE_NAME      = "sluice-${each.key}"
      POWERTOOLS_METRICS_NAMESPACE = local.metrics.namespace
    },
  )

  log_retention_days                 = var.log_retention_days
  queue_kms_key_arn                  = local.queue_key_arn
  dead_letter_queue_arn              = aws_sqs_queue.dead_letter.arn
  max_receive_count                  = var.max_receive_count
  batch_size                         = each.value.batch_size
  maximum_batching_window_in_seconds = each.value.maximum_batching_window_in_seconds
  maximum_concurrency                = each.value.maximum_concurrency
  event_source_mapping_enabled       = var.event_source_mappings_enabled
  snap_start                         = var.snap_start
}

# --- The HTTP API: sign-in, the api function, the API ------------------------------------

# Each of the three can be switched off for an environment where AWS's service does not
# exist (LocalStack's community edition: no Cognito, API Gateway v2 or CloudFront); the
# pipeline itself never depends on them (docs/localstack.md).
module "auth" {
  source = "../auth"
  count  = var.auth_enabled ? 1 : 0

  name          = "${local.name}-users"
  callback_urls = [for origin in local.web_origins : "${origin}/"]
  logout_urls   = [for origin in local.web_origins : "${origin}/"]
  seed_user     = var.seed_user == null ? null : { email = var.seed_user.email, groups = var.seed_user.groups }
  # sensitive(): kept out of plans and logs from here on.
  seed_user_temporary_password = var.seed_user == null ? null : sensitive(var.seed_user.temporary_password)
  deletion_protection          = !var.force_destroy
  tags                         = local.tags
}

module "api_function" {
  source = "../lambda"
  count  = var.api_enabled ? 1 : 0

  function_name = "${local.name}-api"
  handler       = "sluice.handlers.api.handler"
  code_zip_path = local.code_zip_path
  layer_arns    = [module.layer.layer_version_arn]
  architecture  = var.architecture
  memory_size   = local.api_function.memory_size
  timeout       = local.api_function.timeout
  tags          = local.tags
  queue_trigger = false
  snap_start    = var.snap_start

  role_description = "Execution role of the sluice api handler."
  policy_json      = data.aws_iam_policy_document.api[0].json

  environment_variables = merge(local.function_environment["api"], {
    POWERTOOLS_SERVICE_NAME = "sluice-api"
  })

  log_retention_days = var.log_retention_days
}

module "api" {
  source = "../api"
  count  = var.api_enabled ? 1 : 0

  name                   = "${local.name}-api"
  routes                 = var.api_routes
  function_name          = module.api_function[0].function_name
  function_invoke_arn    = module.api_function[0].invoke_arn
  function_qualifier     = module.api_function[0].invoked_qualifier
  jwt_issuer             = module.auth[0].issuer
  jwt_audience           = module.auth[0].client_ids
  cors_allowed_origins   = local.web_origins
  throttling_burst_limit = var.api_throttling_burst_limit
  throttling_rate_limit  = var.api_throttling_rate_limit
  log_retention_days     = var.log_retention_days
  tags                   = local.tags
}

# --- The web app ---------------------------------------------------------------------------

locals {
  # Where browsers reach the services the app calls: AWS's endpoints, or the emulator's.
  s3_origins = var.service_endpoint != null ? [var.service_endpoint] : flatten([
    for bucket in ["raw", "processed"] : [
      "https://${local.bucket_names[bucket]}.s3.amazonaws.com",
      "https://${local.bucket_names[bucket]}.s3.${local.region}.amazonaws.com",
    ]
  ])
  cognito_endpoint = coalesce(var.service_endpoint, "https://cognito-idp.${local.region}.amazonaws.com")
  web_api_url      = var.runtime_urls != null ? var.runtime_urls.api : one(module.api[*].api_endpoint)

  # The API's origin cannot be named in the CSP: the API's CORS names the distribution, and
  # the distribution carries the CSP, so naming the API there would be a dependency cycle.
  # API Gateway's regional domain stands in for it (modules/web/README.md).
  web_api_source = var.runtime_urls != null ? regex("^https?://[^/]+", var.runtime_urls.api) : "https://*.execute-api.${local.region}.amazonaws.com"

  # The API's CORS origins and the hosted UI's callbacks: the configured ones, the
  # distribution, and the local runtime's web server when there is one.
  web_origins = distinct(concat(
    var.web_origins,
    # module.web[0].url, not module.web: only the URL, or the origins would wait on config.json.
    var.web_app_dir == null ? [] : [module.web[0].url],
    var.runtime_urls != null ? [var.runtime_urls.web] : [],
  ))
}

module "web" {
  source = "../web"
  count  = var.web_app_dir == null ? 0 : 1

  name    = "${local.name}-web"
  app_dir = var.web_app_dir
  app_config = {
    api_url                   = local.web_api_url
    region                    = local.region
    user_pool_id              = module.auth[0].user_pool_id
    sign_in                   = var.web_sign_in
    client_id                 = var.web_sign_in == "password" ? module.auth[0].cli_client_id : module.auth[0].web_client_id
    cognito_endpoint          = local.cognito_endpoint
    auth_domain               = "https://${module.auth[0].hosted_ui_domain}"
    datasets                  = var.web_datasets
    multipart_threshold_bytes = var.web_multipart_threshold_bytes
  }
  connect_sources = distinct(concat(
    [local.web_api_source, local.cognito_endpoint],
    var.web_sign_in == "hosted_ui" ? ["https://${module.auth[0].hosted_ui_domain}"] : [],
    local.s3_origins,
  ))
  image_sources           = local.s3_origins
  security_headers_policy = var.web_security_headers_policy
  wait_for_deployment     = var.web_wait_for_deployment
  deny_insecure_transport = var.deny_insecure_transport
  force_destroy           = var.force_destroy
  tags                    = local.tags
}

# --- Bucket notifications ------------------------------------------------------------------

data "aws_iam_policy_document" "queue" {
  for_each = local.queue_sources

  statement {
    sid       = "AllowBucketNotifications"
    actions   = ["sqs:SendMessage"]
    resources = [module.function[each.key].queue_arn]

    principals {
      type        = "Service"
      identifiers = ["s3.amazonaws.com"]
    }

    condition {
      test     = "ArnEquals"
      variable = "aws:SourceArn"
      values   = each.value
    }

    condition {
      test     = "StringEquals"
      variable = "aws:SourceAccount"
      values   = [local.account_id]
    }
  }

  # The bundle queue also carries the sweep rule's scheduled events.
  dynamic "statement" {
    for_each = each.key == "bundle" ? [aws_cloudwatch_event_rule.bundle_sweep.arn] : []

    content {
      sid       = "AllowSweepSchedule"
      actions   = ["sqs:SendMessage"]
      resources = [module.function[each.key].queue_arn]

      principals {
        type        = "Service"
        identifiers = ["events.amazonaws.com"]
      }

      condition {
        test     = "ArnEquals"
        variable = "aws:SourceArn"
        values   = [statement.value]
      }
    }
  }
}

resource "aws_sqs_queue_policy" "this" {
  for_each = local.queue_sources

  queue_url = module.function[each.key].queue_url
  policy    = data.aws_iam_policy_document.queue[each.key].json
}

module "notifications" {
  source   = "../notifications"
  for_each = local.notifications

  bucket_name = module.bucket[each.key].bucket_id
  queues = [
    for entry in each.value : {
      id            = entry.id
      queue_arn     = module.function[entry.function].queue_arn
      events        = entry.events
      filter_prefix = entry.filter_prefix
    }
  ]

  # S3 validates that it may send to each queue when the configuration is written.
  depends_on = [aws_sqs_queue_policy.this]
}

# --- The bundle handler's sweep --------------------------------------------------------------

# Every few minutes a scheduled event on the bundle queue makes the bundle handler deliver
# to recipients who confirmed their email subscription since, and delete the request topics
# past their expiry (src/sluice/request_topics.py; docs/decisions.md, 34). Each sweep is a
# chain of its own, so Lambda's recursive loop detection never sees one.
resource "aws_cloudwatch_event_rule" "bundle_sweep" {
  name                = "${local.name}-bundle-sweep"
  description         = "Sweeps the ${local.name} bundle request topics: late deliveries, expiry."
  schedule_expression = "rate(${var.bundle_sweep_minutes} ${var.bundle_sweep_minutes == 1 ? "minute" : "minutes"})"
  tags                = local.tags
}

resource "aws_cloudwatch_event_target" "bundle_sweep" {
  rule = aws_cloudwatch_event_rule.bundle_sweep.name
  arn  = module.function["bundle"].queue_arn

  # The queue policy must admit the rule before EventBridge can deliver.
  depends_on = [aws_sqs_queue_policy.this]
}

# --- Topics and alarms ---------------------------------------------------------------------

resource "aws_sns_topic" "bundles" {
  name              = "${local.name}-bundles"
  kms_master_key_id = var.bundle_topic_kms_key_id
  tags              = local.tags
}

# Only the bundle function publishes bundle outcomes: the Allow names its role, and the Deny
# holds even against a principal of this account whose own IAM policy allows sns:Publish on
# "*". The account keeps the management rights of SNS's default topic policy (without
# Publish), so the topic stays administrable through IAM.
data "aws_iam_policy_document" "bundles_topic" {
  statement {
    sid = "AccountOwnerManages"
    actions = [
      "sns:GetTopicAttributes",
      "sns:SetTopicAttributes",
      "sns:AddPermission",
      "sns:RemovePermission",
      "sns:DeleteTopic",
      "sns:Subscribe",
      "sns:ListSubscriptionsByTopic",
    ]
    resources = [aws_sns_topic.bundles.arn]

    principals {
      type        = "AWS"
      identifiers = ["arn:${local.partition}:iam::${local.account_id}:root"]
    }
  }

  statement {
    sid       = "BundleFunctionPublishes"
    actions   = ["sns:Publish"]
    resources = [aws_sns_topic.bundles.arn]

    principals {
      type        = "AWS"
      identifiers = [module.function["bundle"].role_arn]
    }
  }

  statement {
    sid       = "NobodyElsePublishes"
    effect    = "Deny"
    actions   = ["sns:Publish"]
    resources = [aws_sns_topic.bundles.arn]

    principals {
      type        = "AWS"
      identifiers = ["*"]
    }

    condition {
      test     = "ArnNotEquals"
      variable = "aws:PrincipalArn"
      values   = [module.function["bundle"].role_arn]
    }
  }
}

resource "aws_sns_topic_policy" "bundles" {
  arn    = aws_sns_topic.bundles.arn
  policy = data.aws_iam_policy_document.bundles_topic.json
}

# The alerts topic's own key (policy: "Encryption keys" above).
resource "aws_kms_key" "alerts" {
  description             = "Encrypts the ${local.name} alerts topic; usable by CloudWatch alarms."
  enable_key_rotation     = true
  deletion_window_in_days = 7
  policy                  = data.aws_iam_policy_document.key["alerts"].json
  tags                    = local.tags
}

resource "aws_kms_alias" "alerts" {
  name          = "alias/${local.name}-alerts"
  target_key_id = aws_kms_key.alerts.key_id
}

resource "aws_sns_topic" "alerts" {
  name              = "${local.name}-alerts"
  kms_master_key_id = aws_kms_key.alerts.arn
  tags              = local.tags
}

resource "aws_sns_topic_subscription" "alert_email" {
  for_each = toset(var.alert_emails)

  topic_arn = aws_sns_topic.alerts.arn
  protocol  = "email"
  endpoint  = each.value
}

resource "aws_cloudwatch_metric_alarm" "dead_letter_queue_not_empty" {
  alarm_name          = "${local.name}-dlq-not-empty"
  alarm_description   = "Messages reached the ${local.name} dead-letter queue: a handler failed them ${var.max_receive_count} times. Inspect, fix, then redrive."
  namespace           = "AWS/SQS"
  metric_name         = "ApproximateNumberOfMessagesVisible"
  dimensions          = { QueueName = aws_sqs_queue.dead_letter.name }
  statistic           = "Maximum"
  period              = 60
  evaluation_periods  = 1
  threshold           = 0
  comparison_operator = "GreaterThanThreshold"
  treat_missing_data  = "notBreaching"
  actions_enabled     = true
  alarm_actions       = [aws_sns_topic.alerts.arn]
  ok_actions          = [aws_sns_topic.alerts.arn]
  tags                = local.tags
}

resource "aws_cloudwatch_metric_alarm" "function_errors" {
  for_each = merge(module.function, { for api in module.api_function : "api" => api })

  alarm_name          = "${each.value.function_name}-errors"
  alarm_description   = "The ${each.value.function_name} function failed invocations (unhandled errors, timeouts)."
  namespace           = "AWS/Lambda"
  metric_name         = "Errors"
  dimensions          = { FunctionName = each.value.function_name }
  statistic           = "Sum"
  period              = 300
  evaluation_periods  = 1
  threshold           = 0
  comparison_operator = "GreaterThanThreshold"
  treat_missing_data  = "notBreaching"
  actions_enabled     = true
  alarm_actions       = [aws_sns_topic.alerts.arn]
  ok_actions          = [aws_sns_topic.alerts.arn]
  tags                = local.tags
}

# A failed item in a partial batch response is not a function error: Lambda's Errors
# metric never sees it, and the DLQ alarm only fires after max_receive_count receives.
# The handlers count failed items themselves (EMF), so this alarm fires within a minute.
resource "aws_cloudwatch_metric_alarm" "failed_items" {
  for_each = module.function

  alarm_name          = "${each.value.function_name}-failed-items"
  alarm_description   = "The ${each.value.function_name} function handed messages back for a retry (an object raised). Read its logs; they end in the dead-letter queue after ${var.max_receive_count} receives."
  namespace           = local.metrics.namespace
  metric_name         = local.metrics.failed_items
  dimensions          = { (local.metrics.function_dimension) = each.value.function_name }
  statistic           = "Sum"
  period              = 60
  evaluation_periods  = 1
  threshold           = 0
  comparison_operator = "GreaterThanThreshold"
  treat_missing_data  = "notBreaching"
  actions_enabled     = true
  alarm_actions       = [aws_sns_topic.alerts.arn]
  ok_actions          = [aws_sns_topic.alerts.arn]
  tags                = local.tags
}

# The API, its function and the user pool became optional (api_enabled, auth_enabled): an
# environment applied before keeps them where they are.
moved {
  from = module.auth
  to   = module.auth[0]
}

moved {
  from = module.api_function
  to   = module.api_function[0]
}

moved {
  from = module.api
  to   = module.api[0]
}

# The execution roles moved from modules/iam into each function's lambda module, and the
# upload role here (issue 11): an environment applied before keeps its roles and policies.
moved {
  from = module.iam.aws_iam_role.this["transform"]
  to   = module.function["transform"].aws_iam_role.this
}

moved {
  from = module.iam.aws_iam_role_policy.this["transform"]
  to   = module.function["transform"].aws_iam_role_policy.this
}

moved {
  from = module.iam.aws_iam_role.this["archive"]
  to   = module.function["archive"].aws_iam_role.this
}

moved {
  from = module.iam.aws_iam_role_policy.this["archive"]
  to   = module.function["archive"].aws_iam_role_policy.this
}

moved {
  from = module.iam.aws_iam_role.this["tag"]
  to   = module.function["tag"].aws_iam_role.this
}

moved {
  from = module.iam.aws_iam_role_policy.this["tag"]
  to   = module.function["tag"].aws_iam_role_policy.this
}

moved {
  from = module.iam.aws_iam_role.this["bundle"]
  to   = module.function["bundle"].aws_iam_role.this
}

moved {
  from = module.iam.aws_iam_role_policy.this["bundle"]
  to   = module.function["bundle"].aws_iam_role_policy.this
}

# The api's roles: first given a count (api_enabled) inside modules/iam, then moved out.
moved {
  from = module.iam.aws_iam_role.api
  to   = module.iam.aws_iam_role.api[0]
}

moved {
  from = module.iam.aws_iam_role.api[0]
  to   = module.api_function[0].aws_iam_role.this
}

moved {
  from = module.iam.aws_iam_role_policy.api
  to   = module.iam.aws_iam_role_policy.api[0]
}

moved {
  from = module.iam.aws_iam_role_policy.api[0]
  to   = module.api_function[0].aws_iam_role_policy.this
}

moved {
  from = module.iam.aws_iam_role.upload
  to   = module.iam.aws_iam_role.upload[0]
}

moved {
  from = module.iam.aws_iam_role.upload[0]
  to   = aws_iam_role.upload[0]
}

moved {
  from = module.iam.aws_iam_role_policy.upload
  to   = module.iam.aws_iam_role_policy.upload[0]
}

moved {
  from = module.iam.aws_iam_role_policy.upload[0]
  to   = aws_iam_role_policy.upload[0]
}
