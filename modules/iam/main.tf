# One execution role per handler, each with one inline policy that names exactly the
# queue, log group, bucket prefixes, tables and topic that handler uses (docs/contracts.md).

locals {
  raw       = var.bucket_arns.raw
  processed = var.bucket_arns.processed
  archive   = var.bucket_arns.archive
  work      = var.bucket_arns.work

  # The objects under each key prefix, e.g. local.objects.processed.receipts is
  # "<PROCESSED ARN>/receipts/*": the prefixes are the handlers' own (src/sluice/keys.json).
  objects = {
    for bucket, prefixes in var.key_prefixes : bucket => {
      for name, prefix in prefixes : name => "${var.bucket_arns[bucket]}/${prefix}*"
    }
  }

  # Multipart writes (streamed outputs, server-side copies of large objects) abort their
  # upload when they fail, so that needs its own action beside PutObject.
  put_object_actions = ["s3:PutObject", "s3:AbortMultipartUpload"]

  # Handlers that write S3 objects, so need kms:GenerateDataKey under SSE-KMS.
  object_writers = ["transform", "archive", "tag", "bundle"]

  policy_documents = {
    transform = data.aws_iam_policy_document.transform.json
    archive   = data.aws_iam_policy_document.archive.json
    tag       = data.aws_iam_policy_document.tag.json
    bundle    = data.aws_iam_policy_document.bundle.json
  }
}

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
  for_each = var.functions

  name               = "${var.name_prefix}-${each.key}"
  description        = "Execution role of the sluice ${each.key} handler."
  assume_role_policy = data.aws_iam_policy_document.assume_role.json
  tags               = var.tags
}

# What every handler needs: its own queue, its own log group, and the bucket key if any.
data "aws_iam_policy_document" "common" {
  for_each = var.functions

  statement {
    sid = "ConsumeOwnQueue"
    actions = [
      "sqs:ReceiveMessage",
      "sqs:DeleteMessage",
      "sqs:GetQueueAttributes",
      "sqs:ChangeMessageVisibility",
    ]
    resources = [each.value.queue_arn]
  }

  statement {
    sid       = "WriteOwnLogs"
    actions   = ["logs:CreateLogStream", "logs:PutLogEvents"]
    resources = ["${each.value.log_group_arn}:*"]
  }

  # The environment's key (buckets, queues; DynamoDB uses it through its own grants): every
  # handler decrypts its queue's messages and the objects it reads; only the ones that
  # write objects need new data keys.
  dynamic "statement" {
    for_each = var.kms_key_arn == null ? [] : [var.kms_key_arn]

    content {
      sid       = "UseDataKey"
      actions   = contains(local.object_writers, each.key) ? ["kms:Decrypt", "kms:GenerateDataKey"] : ["kms:Decrypt"]
      resources = [statement.value]
    }
  }
}

data "aws_iam_policy_document" "transform" {
  source_policy_documents = [data.aws_iam_policy_document.common["transform"].json]

  # The upload is read by ETag (IfMatch), never by version id.
  statement {
    sid       = "ReadRaw"
    actions   = ["s3:GetObject"]
    resources = ["${local.raw}/*"]
  }

  # An event without a version id (an emitter that omits it) of a version deleted before
  # it was processed: the version is found by its ETag among RAW's versions, so the ledger
  # names it as every other record of it does (one record per version).
  statement {
    sid       = "ListRawVersions"
    actions   = ["s3:ListBucketVersions"]
    resources = [local.raw]
  }

  statement {
    sid     = "WriteProcessedOutputs"
    actions = local.put_object_actions
    resources = [
      local.objects.processed.data,
      local.objects.processed.errors,
      local.objects.processed.thumbnails,
      local.objects.processed.receipts,
    ]
  }

  statement {
    sid       = "ReadReceipts"
    actions   = ["s3:GetObject"]
    resources = [local.objects.processed.receipts]
  }

  # A new version of an input can produce fewer outputs than the one before (a fixed file
  # has no errors report, a now-rejected image no thumbnails): the stale ones are found
  # with HeadObject and removed.
  statement {
    sid     = "ReplaceStaleOutputs"
    actions = ["s3:GetObject", "s3:DeleteObject"]
    resources = [
      local.objects.processed.data,
      local.objects.processed.errors,
      local.objects.processed.thumbnails,
    ]
  }

  # A version deleted from RAW while it was transformed wrote over the outputs of the
  # key's archived version (same names): they are copied back from their own versions
  # (PROCESSED is versioned), found by listing the key's versions.
  statement {
    sid     = "RestoreOverwrittenOutputs"
    actions = ["s3:GetObjectVersion"]
    resources = [
      local.objects.processed.data,
      local.objects.processed.errors,
      local.objects.processed.thumbnails,
    ]
  }

  statement {
    sid       = "ListProcessedVersions"
    actions   = ["s3:ListBucketVersions"]
    resources = [local.processed]
  }

  # Per-key leases (sluice.leases): conditional PutObject takes one, conditional
  # DeleteObject releases it, GetObject reads who holds it.
  statement {
    sid       = "KeyLeases"
    actions   = ["s3:PutObject", "s3:GetObject", "s3:DeleteObject"]
    resources = [local.objects.processed.leases]
  }

  # The version ledger records a version deleted from RAW before it could be processed.
  statement {
    sid       = "RecordDeletedVersions"
    actions   = ["s3:PutObject"]
    resources = [local.objects.processed.versions]
  }

  # Without ListBucket a missing receipt reads as 403 instead of 404.
  statement {
    sid       = "ListProcessed"
    actions   = ["s3:ListBucket"]
    resources = [local.processed]
  }

  # DeleteItem: the item of a version that died before its receipt and was then deleted
  # from RAW (sluice.image_items.forget_unreceipted).
  statement {
    sid       = "WriteImageMetadata"
    actions   = ["dynamodb:UpdateItem", "dynamodb:DeleteItem"]
    resources = [var.images_table_arn]
  }
}

# What removing a deleted input takes (sluice.deletion, decision 30), for the archive
# handler (deleted from RAW after its receipt) and the tag handler (removed from ARCHIVE):
# under the key's transform lease (a new upload's outputs have the same names), record the
# version deleted, then remove the outputs the receipt lists and the receipt itself.
data "aws_iam_policy_document" "remove_deleted_inputs" {
  statement {
    sid       = "RecordDeletedInputs"
    actions   = ["s3:PutObject"]
    resources = [local.objects.processed.versions]
  }

  statement {
    sid     = "RemoveDeletedInputsOutputs"
    actions = ["s3:DeleteObject"]
    resources = [
      local.objects.processed.receipts,
      local.objects.processed.data,
      local.objects.processed.errors,
      local.objects.processed.thumbnails,
    ]
  }

  statement {
    sid       = "HoldKeyLeases"
    actions   = ["s3:PutObject", "s3:GetObject", "s3:DeleteObject"]
    resources = [local.objects.processed.leases]
  }

  # Without ListBucket a missing receipt, record or lease reads as 403 instead of 404.
  statement {
    sid       = "ListProcessedLedger"
    actions   = ["s3:ListBucket"]
    resources = [local.processed]
  }
}

data "aws_iam_policy_document" "archive" {
  source_policy_documents = [
    data.aws_iam_policy_document.common["archive"].json,
    data.aws_iam_policy_document.remove_deleted_inputs.json,
  ]

  statement {
    sid       = "ReadReceipts"
    actions   = ["s3:GetObject"]
    resources = [local.objects.processed.receipts]
  }

  # Source of the server-side copy, deleted once the copy is verified.
  statement {
    sid = "MoveFromRaw"
    actions = [
      "s3:GetObject",
      "s3:GetObjectVersion",
      "s3:DeleteObject",
      "s3:DeleteObjectVersion",
    ]
    resources = ["${local.raw}/*"]
  }

  statement {
    sid       = "ListRawAndArchive"
    actions   = ["s3:ListBucket"]
    resources = [local.raw, local.archive]
  }

  # Every RAW version older than the one archived is archived too (superseded/).
  statement {
    sid       = "ListRawVersions"
    actions   = ["s3:ListBucketVersions"]
    resources = [local.raw]
  }

  # Each superseded version is recorded in the version ledger.
  statement {
    sid       = "RecordSupersededVersions"
    actions   = ["s3:PutObject"]
    resources = [local.objects.processed.versions]
  }

  # A copy of an older version under a key's current names is kept under superseded/,
  # then made noncurrent (a delete marker; the bucket is versioned).
  statement {
    sid     = "SupersedeArchivedCopies"
    actions = ["s3:DeleteObject"]
    resources = [
      local.objects.archive.images,
      local.objects.archive.data,
      local.objects.archive.rejected,
    ]
  }

  # A key whose newest version is a rejected image withdraws the older image from the
  # library (sluice.image_items): the item's lease, its label memberships and counts
  # (TransactWriteItems is authorised per contained action), then the item. UpdateItem
  # also records where an archived image's original lies (image_items.record_archived).
  statement {
    sid       = "WithdrawImages"
    actions   = ["dynamodb:UpdateItem", "dynamodb:DeleteItem"]
    resources = [var.images_table_arn]
  }

  statement {
    sid       = "WithdrawLabels"
    actions   = ["dynamodb:UpdateItem", "dynamodb:DeleteItem"]
    resources = [var.labels_table_arn]
  }

  # Destination of the copy. Copies replace tags with none (TaggingDirective REPLACE), so
  # neither GetObjectTagging on RAW nor PutObjectTagging here is needed.
  statement {
    sid     = "WriteArchive"
    actions = local.put_object_actions
    resources = [
      local.objects.archive.images,
      local.objects.archive.data,
      local.objects.archive.rejected,
      local.objects.archive.superseded,
    ]
  }

  statement {
    sid     = "VerifyArchive"
    actions = ["s3:GetObject", "s3:GetObjectVersion"]
    resources = [
      local.objects.archive.images,
      local.objects.archive.data,
      local.objects.archive.rejected,
      local.objects.archive.superseded,
    ]
  }
}

data "aws_iam_policy_document" "tag" {
  #checkov:skip=CKV_AWS_356:rekognition:DetectLabels has no resource-level permissions; "*" is the only resource it accepts.
  source_policy_documents = [
    data.aws_iam_policy_document.common["tag"].json,
    data.aws_iam_policy_document.remove_deleted_inputs.json,
  ]

  statement {
    sid       = "ReadArchivedImages"
    actions   = ["s3:GetObject", "s3:GetObjectVersion"]
    resources = [local.objects.archive.images]
  }

  dynamic "statement" {
    for_each = var.rekognition_enabled ? [1] : []

    content {
      sid       = "DetectLabels"
      actions   = ["rekognition:DetectLabels"]
      resources = ["*"]
    }
  }

  # The lease, the labels and their state are conditional UpdateItems; the item they
  # return is the only read. DeleteItem: a run that finds its image withdrawn after taking
  # the lease drops the item the lease alone created.
  statement {
    sid       = "UpdateImageMetadata"
    actions   = ["dynamodb:UpdateItem", "dynamodb:DeleteItem"]
    resources = [var.images_table_arn]
  }

  # Removing an archived input (sluice.deletion, decision 30): is the name still current,
  # and which copy was removed (the newest version left, read by version id; a removed
  # superseded/ copy is named by its record instead).
  statement {
    sid     = "FindRemovedArchiveCopies"
    actions = ["s3:GetObject", "s3:GetObjectVersion"]
    resources = [
      local.objects.archive.data,
      local.objects.archive.rejected,
    ]
  }

  statement {
    sid       = "FindRemovedSupersededCopies"
    actions   = ["s3:GetObject"]
    resources = [local.objects.archive.superseded]
  }

  statement {
    sid       = "ListArchiveVersions"
    actions   = ["s3:ListBucket", "s3:ListBucketVersions"]
    resources = [local.archive]
  }

  # The removed input's receipt, or a removed superseded copy's record.
  statement {
    sid       = "ReadRecords"
    actions   = ["s3:GetObject"]
    resources = [local.objects.processed.receipts, local.objects.processed.versions]
  }

  # TransactWriteItems is authorised per contained action (conditional Put, Update,
  # Delete: no ConditionCheck item), so it needs no action of its own.
  statement {
    sid = "MaintainLabels"
    actions = [
      "dynamodb:PutItem",
      "dynamodb:UpdateItem",
      "dynamodb:DeleteItem",
    ]
    resources = [var.labels_table_arn]
  }
}

data "aws_iam_policy_document" "bundle" {
  source_policy_documents = [data.aws_iam_policy_document.common["bundle"].json]

  statement {
    sid       = "ReadRequests"
    actions   = ["s3:GetObject"]
    resources = [local.objects.work.requests]
  }

  statement {
    sid       = "WriteBundles"
    actions   = local.put_object_actions
    resources = [local.objects.work.bundles]
  }

  # A presigned URL carries its signer's permissions: the URL the handler hands out for a
  # bundle only works if this role may read it. Reading the status also makes reruns idempotent.
  statement {
    sid       = "ReadBundles"
    actions   = ["s3:GetObject"]
    resources = [local.objects.work.bundles]
  }

  # Without ListBucket a missing bundle status reads as 403 instead of 404.
  statement {
    sid       = "ListWork"
    actions   = ["s3:ListBucket"]
    resources = [local.work]
  }

  statement {
    sid       = "ReadArchivedImages"
    actions   = ["s3:GetObject"]
    resources = [local.objects.archive.images]
  }

  # A label's images are a Query; "all" reads each label's count item first (GetItem).
  statement {
    sid       = "FindImagesByLabel"
    actions   = ["dynamodb:Query", "dynamodb:GetItem"]
    resources = [var.labels_table_arn]
  }

  statement {
    sid       = "ReadImageMetadata"
    actions   = ["dynamodb:BatchGetItem"]
    resources = [var.images_table_arn]
  }

  statement {
    sid       = "NotifyBundleReady"
    actions   = ["sns:Publish"]
    resources = [var.bundle_topic_arn]
  }

  # A request that names a recipient gets a topic of its own (sluice.request_topics):
  # created with its expiry tags (CreateTopic with tags needs TagResource too), the
  # recipient subscribed, the link published once the subscription is confirmed, then
  # deleted; the sweep reads each topic's tags. Only topics under the environment's
  # request-topic prefix.
  statement {
    sid = "RequestTopics"
    actions = [
      "sns:CreateTopic",
      "sns:TagResource",
      "sns:Subscribe",
      "sns:ListSubscriptionsByTopic",
      "sns:Publish",
      "sns:ListTagsForResource",
      "sns:DeleteTopic",
    ]
    resources = [var.request_topics_arn_pattern]
  }

  # Archived images in an archive tier are restored before a bundle reads them, and the
  # bundle waits under a marker its sweep deletes once it is made (sluice.restores).
  dynamic "statement" {
    for_each = var.cold_storage_enabled ? [1] : []

    content {
      sid       = "RestoreArchivedImages"
      actions   = ["s3:RestoreObject"]
      resources = [local.objects.archive.images]
    }
  }

  dynamic "statement" {
    for_each = var.cold_storage_enabled ? [1] : []

    content {
      sid       = "ForgetRestoreMarkers"
      actions   = ["s3:DeleteObject"]
      resources = ["${var.bucket_arns.work}/${var.key_prefixes.work.bundles}_restoring/*"] # sluice.restores.RESTORING_PREFIX
    }
  }

  # The sweep finds those topics by name; ListTopics has no resource-level permission.
  statement {
    sid       = "FindRequestTopics"
    actions   = ["sns:ListTopics"]
    resources = ["*"]
  }
}

resource "aws_iam_role_policy" "this" {
  for_each = var.functions

  name   = "${var.name_prefix}-${each.key}"
  role   = aws_iam_role.this[each.key].id
  policy = local.policy_documents[each.key]
}

# --- The api function and the upload role it hands out -------------------------------------

locals {
  # Where the api lets clients write in RAW: <dataset prefix or nothing>uploads/<user>/...
  # (sluice.uploads). `*` in an IAM resource spans slashes, so */uploads/* covers every
  # dataset prefix without naming them here.
  upload_objects = [local.objects.raw.uploads, "${local.raw}/*/${var.key_prefixes.raw.uploads}*"]
}

resource "aws_iam_role" "api" {
  count = var.api_enabled ? 1 : 0

  name               = "${var.name_prefix}-api"
  description        = "Execution role of the sluice api handler."
  assume_role_policy = data.aws_iam_policy_document.assume_role.json
  tags               = var.tags
}

# Presigned URLs carry their signer's permissions: the api may write the upload keys it
# signs for, and read the thumbnails, originals and bundles it links to.
data "aws_iam_policy_document" "api" {
  count = var.api_enabled ? 1 : 0

  statement {
    sid       = "WriteOwnLogs"
    actions   = ["logs:CreateLogStream", "logs:PutLogEvents"]
    resources = ["${var.api_log_group_arn}:*"]
  }

  statement {
    sid       = "SignUploads"
    actions   = local.put_object_actions
    resources = local.upload_objects
  }

  # Tells "uploaded, no receipt yet" from "never uploaded" (GET /inputs/{key}) without
  # reading what was uploaded.
  statement {
    sid       = "FindPendingUploads"
    actions   = ["s3:ListBucket"]
    resources = [local.raw]

    condition {
      test     = "StringLike"
      variable = "s3:prefix"
      values   = ["${var.key_prefixes.raw.uploads}*", "*/${var.key_prefixes.raw.uploads}*"]
    }
  }

  statement {
    sid       = "HandOutOneKeyCredentials"
    actions   = ["sts:AssumeRole"]
    resources = [aws_iam_role.upload[0].arn]
  }

  statement {
    sid       = "ReadReceipts"
    actions   = ["s3:GetObject"]
    resources = [local.objects.processed.receipts]
  }

  # Lists receipts (GET /inputs); without ListBucket a missing receipt reads as 403, not 404.
  statement {
    sid       = "ListReceipts"
    actions   = ["s3:ListBucket"]
    resources = [local.processed]
  }

  # Thumbnails are linked (presigned GET) and removed when an image is withdrawn.
  statement {
    sid       = "LinkAndWithdrawThumbnails"
    actions   = ["s3:GetObject", "s3:DeleteObject"]
    resources = [local.objects.processed.thumbnails]
  }

  # DELETE /images/{id} removes the original, then goes the way of every ARCHIVE removal
  # (sluice.deletion, decision 30): which copy was removed (by version id), the ledger,
  # the key's transform lease.
  statement {
    sid       = "LinkAndDeleteOriginals"
    actions   = ["s3:GetObject", "s3:GetObjectVersion", "s3:DeleteObject"]
    resources = [local.objects.archive.images]
  }

  # A data file's receipt links its clean output and its errors report (presigned GET).
  statement {
    sid       = "LinkDataOutputs"
    actions   = ["s3:GetObject"]
    resources = [local.objects.processed.data, local.objects.processed.errors]
  }

  statement {
    sid       = "ListArchiveVersions"
    actions   = ["s3:ListBucket", "s3:ListBucketVersions"]
    resources = [local.archive]
  }

  statement {
    sid       = "RecordDeletedVersions"
    actions   = ["s3:GetObject", "s3:PutObject"]
    resources = [local.objects.processed.versions]
  }

  statement {
    sid       = "RemoveReceipts"
    actions   = ["s3:DeleteObject"]
    resources = [local.objects.processed.receipts]
  }

  statement {
    sid       = "KeyLeases"
    actions   = ["s3:PutObject", "s3:GetObject", "s3:DeleteObject"]
    resources = [local.objects.processed.leases]
  }

  statement {
    sid       = "RequestBundles"
    actions   = ["s3:PutObject"]
    resources = [local.objects.work.requests]
  }

  statement {
    sid       = "ReadBundleStatus"
    actions   = ["s3:GetObject"]
    resources = [local.objects.work.bundles]
  }

  # Without ListBucket a missing bundle status reads as 403 instead of 404.
  statement {
    sid       = "ListWork"
    actions   = ["s3:ListBucket"]
    resources = [local.work]
  }

  statement {
    sid       = "ReadAndWithdrawImages"
    actions   = ["dynamodb:GetItem", "dynamodb:Scan", "dynamodb:BatchGetItem", "dynamodb:UpdateItem", "dynamodb:DeleteItem"]
    resources = [var.images_table_arn]
  }

  # TransactWriteItems is authorised per contained action (withdrawal: delete membership,
  # decrement count).
  statement {
    sid       = "ReadAndWithdrawLabels"
    actions   = ["dynamodb:Query", "dynamodb:GetItem", "dynamodb:DeleteItem", "dynamodb:UpdateItem"]
    resources = [var.labels_table_arn]
  }

  dynamic "statement" {
    for_each = var.kms_key_arn == null ? [] : [var.kms_key_arn]

    content {
      sid       = "UseBucketKey"
      actions   = ["kms:Decrypt", "kms:GenerateDataKey"]
      resources = [statement.value]
    }
  }
}

resource "aws_iam_role_policy" "api" {
  count = var.api_enabled ? 1 : 0

  name   = "${var.name_prefix}-api"
  role   = aws_iam_role.api[0].id
  policy = data.aws_iam_policy_document.api[0].json
}

# Assumed only by the api, with a session policy naming exactly one key: the credentials
# it returns can write that key and nothing else (the intersection of both policies).
data "aws_iam_policy_document" "upload_trust" {
  count = var.api_enabled ? 1 : 0

  statement {
    actions = ["sts:AssumeRole"]

    principals {
      type        = "AWS"
      identifiers = [aws_iam_role.api[0].arn]
    }
  }
}

resource "aws_iam_role" "upload" {
  count = var.api_enabled ? 1 : 0

  name                 = "${var.name_prefix}-upload"
  description          = "Assumed by the sluice api with a one-key session policy, for SDK and aws CLI uploads to RAW."
  assume_role_policy   = data.aws_iam_policy_document.upload_trust[0].json
  max_session_duration = 3600
  tags                 = var.tags
}

data "aws_iam_policy_document" "upload" {
  count = var.api_enabled ? 1 : 0

  statement {
    sid       = "UploadToRaw"
    actions   = local.put_object_actions
    resources = local.upload_objects
  }

  dynamic "statement" {
    for_each = var.kms_key_arn == null ? [] : [var.kms_key_arn]

    # Multipart uploads under SSE-KMS also need Decrypt (S3 reads the data key per part).
    content {
      sid       = "UseBucketKey"
      actions   = ["kms:Decrypt", "kms:GenerateDataKey"]
      resources = [statement.value]
    }
  }
}

resource "aws_iam_role_policy" "upload" {
  count = var.api_enabled ? 1 : 0

  name   = "${var.name_prefix}-upload"
  role   = aws_iam_role.upload[0].id
  policy = data.aws_iam_policy_document.upload[0].json
}

# The api's roles became optional (api_enabled); an environment applied before keeps them.
moved {
  from = aws_iam_role.api
  to   = aws_iam_role.api[0]
}

moved {
  from = aws_iam_role_policy.api
  to   = aws_iam_role_policy.api[0]
}

moved {
  from = aws_iam_role.upload
  to   = aws_iam_role.upload[0]
}

moved {
  from = aws_iam_role_policy.upload
  to   = aws_iam_role_policy.upload[0]
}
