# One handler: its queue (redriving to the environment's dead-letter queue), its log group,
# its execution role, the function, and the event source mapping that feeds the queue to
# the function with partial batch responses. Without queue_trigger (the api function,
# invoked by API Gateway) only the log group, the role and the function. With snap_start,
# every change publishes a version, the `live` alias follows it and the mapping invokes the
# alias: SnapStart only applies to versions.

locals {
  # AWS guidance for SQS event sources: at least six times the function timeout, plus the
  # batching window, so a message is not redelivered while a batch that holds it still runs.
  visibility_timeout_seconds = 6 * var.timeout + var.maximum_batching_window_in_seconds

  # What the queue invokes: the alias of the published version, or the function itself.
  invoked_function_arn = var.snap_start ? aws_lambda_alias.live[0].arn : aws_lambda_function.this.arn
}

resource "aws_sqs_queue" "this" {
  count = var.queue_trigger ? 1 : 0

  name                       = var.function_name
  visibility_timeout_seconds = local.visibility_timeout_seconds
  message_retention_seconds  = var.message_retention_seconds
  tags                       = var.tags

  # SSE-SQS unless a customer managed key is given; a data key is reused for 5 minutes
  # (the default), which bounds the KMS calls of a busy queue.
  sqs_managed_sse_enabled           = var.queue_kms_key_arn == null ? true : null
  kms_master_key_id                 = var.queue_kms_key_arn
  kms_data_key_reuse_period_seconds = var.queue_kms_key_arn == null ? null : 300

  lifecycle {
    # aws_sqs_queue_redrive_policy.this owns the redrive policy. Ignoring it here is what
    # that split requires; it also hides moto's spaced-out JSON for RedrivePolicy (AWS
    # returns it compact), which this resource would otherwise "fix" on every plan.
    ignore_changes = [redrive_policy]
  }
}

resource "aws_sqs_queue_redrive_policy" "this" {
  count = var.queue_trigger ? 1 : 0

  queue_url = aws_sqs_queue.this[0].id

  redrive_policy = jsonencode({
    deadLetterTargetArn = var.dead_letter_queue_arn
    maxReceiveCount     = var.max_receive_count
  })
}

resource "aws_cloudwatch_log_group" "this" {
  #checkov:skip=CKV_AWS_158:CloudWatch Logs encrypts every log group at rest; pass log_kms_key_arn for a customer managed key.
  #checkov:skip=CKV_AWS_338:Retention is chosen per environment (log_retention_days); a year of handler logs is not needed everywhere.
  name              = "/aws/lambda/${var.function_name}"
  retention_in_days = var.log_retention_days
  kms_key_id        = var.log_kms_key_arn
  tags              = var.tags
}

# --- Execution role --------------------------------------------------------------------------

# The role is the function's own (as in terraform-aws-modules/lambda): its queue, log group
# and the queue's key are granted here from those resources' own ARNs; what the handler's
# code does beyond them comes in as policy_json, written by the caller, which knows the
# buckets, tables and topics. Both go into one inline policy named after the function.
data "aws_iam_policy_document" "assume_role" {
  statement {
    actions = ["sts:AssumeRole"]

    principals {
      type        = "Service"
      identifiers = ["lambda.amazonaws.com"]
    }
  }
}

resource "aws_iam_role" "this" {
  name               = var.function_name
  description        = coalesce(var.role_description, "Execution role of the ${var.function_name} function.")
  assume_role_policy = data.aws_iam_policy_document.assume_role.json
  tags               = var.tags
}

data "aws_iam_policy_document" "own" {
  # The Lambda service polls the queue with the function's role.
  dynamic "statement" {
    for_each = aws_sqs_queue.this[*].arn

    content {
      sid = "ConsumeOwnQueue"
      actions = [
        "sqs:ReceiveMessage",
        "sqs:DeleteMessage",
        "sqs:GetQueueAttributes",
        "sqs:ChangeMessageVisibility",
      ]
      resources = [statement.value]
    }
  }

  statement {
    sid       = "WriteOwnLogs"
    actions   = ["logs:CreateLogStream", "logs:PutLogEvents"]
    resources = ["${aws_cloudwatch_log_group.this.arn}:*"]
  }

  # Messages of a queue under a customer managed key are decrypted with the role's rights.
  dynamic "statement" {
    for_each = var.queue_trigger && var.queue_kms_key_arn != null ? [var.queue_kms_key_arn] : []

    content {
      sid       = "DecryptOwnQueue"
      actions   = ["kms:Decrypt"]
      resources = [statement.value]
    }
  }
}

data "aws_iam_policy_document" "this" {
  source_policy_documents = compact([data.aws_iam_policy_document.own.json, var.policy_json])
}

resource "aws_iam_role_policy" "this" {
  name   = var.function_name
  role   = aws_iam_role.this.id
  policy = data.aws_iam_policy_document.this.json
}

# --- Function ----------------------------------------------------------------------------------

resource "aws_lambda_function" "this" {
  #checkov:skip=CKV_AWS_116:The function is fed by SQS; failed messages go to the queue's dead-letter queue, so a function DLQ would never receive anything.
  #checkov:skip=CKV_AWS_117:The handlers only call AWS APIs; a VPC would add NAT or endpoints and protect nothing.
  #checkov:skip=CKV_AWS_272:Code signing needs a signing profile per account; the code zip is built reproducibly in CI and deployed by Terraform.
  #checkov:skip=CKV_AWS_50:The handlers do not use the X-Ray SDK; Powertools structured logs carry the request ids.
  #checkov:skip=CKV_AWS_115:Concurrency is bounded by the event source mapping's maximum_concurrency; reserved concurrency would take from the account's unreserved pool.
  #checkov:skip=CKV_AWS_173:The environment holds only resource names, no secrets; Lambda encrypts it at rest with an AWS managed key.
  function_name    = var.function_name
  role             = aws_iam_role.this.arn
  handler          = var.handler
  runtime          = var.runtime
  architectures    = [var.architecture]
  memory_size      = var.memory_size
  timeout          = var.timeout
  filename         = var.code_zip_path
  source_code_hash = filebase64sha256(var.code_zip_path)
  layers           = var.layer_arns
  tags             = var.tags

  # SnapStart runs init (imports, clients, schema compilation) once, when a version is
  # published, and restores its snapshot on each cold start. It needs published versions.
  publish = var.snap_start

  dynamic "snap_start" {
    for_each = var.snap_start ? ["PublishedVersions"] : []

    content {
      apply_on = snap_start.value
    }
  }

  environment {
    variables = var.environment_variables
  }

  # The log group (with its retention) must exist before the function's first log line
  # makes Lambda create one without retention; the role's policy before the function (and
  # so before the mapping, which AWS refuses unless the role may already read the queue).
  depends_on = [aws_cloudwatch_log_group.this, aws_iam_role_policy.this]
}

resource "aws_lambda_alias" "live" {
  count = var.snap_start ? 1 : 0

  name             = "live"
  description      = "The published version the queue invokes (restored from its SnapStart snapshot)."
  function_name    = aws_lambda_function.this.function_name
  function_version = aws_lambda_function.this.version
}

resource "aws_lambda_event_source_mapping" "this" {
  count = var.queue_trigger ? 1 : 0

  event_source_arn                   = aws_sqs_queue.this[0].arn
  function_name                      = local.invoked_function_arn
  enabled                            = var.event_source_mapping_enabled
  batch_size                         = var.batch_size
  maximum_batching_window_in_seconds = var.maximum_batching_window_in_seconds
  function_response_types            = ["ReportBatchItemFailures"]

  scaling_config {
    maximum_concurrency = var.maximum_concurrency
  }

  # Consume only once failed messages can reach the dead-letter queue.
  depends_on = [aws_sqs_queue_redrive_policy.this]

  lifecycle {
    precondition {
      condition     = var.batch_size <= 10 || var.maximum_batching_window_in_seconds >= 1
      error_message = "${var.function_name}: batch_size above 10 needs maximum_batching_window_in_seconds of at least 1."
    }

    precondition {
      condition     = var.dead_letter_queue_arn != null
      error_message = "${var.function_name}: a queue-triggered function needs dead_letter_queue_arn."
    }
  }
}

# The queue resources gained a count (queue_trigger); existing states keep them.
moved {
  from = aws_sqs_queue.this
  to   = aws_sqs_queue.this[0]
}

moved {
  from = aws_sqs_queue_redrive_policy.this
  to   = aws_sqs_queue_redrive_policy.this[0]
}

moved {
  from = aws_lambda_event_source_mapping.this
  to   = aws_lambda_event_source_mapping.this[0]
}
