# What each handler's code may do beyond its own queue, log group and queue key, which the
# lambda module grants its role itself: one policy document per function, passed to the
# module as policy_json and merged into the role's one inline policy. Each names exactly
# the bucket prefixes, tables and topics its handler uses (docs/contracts.md). A grant is
# added only for a call the handler's code makes; tests/e2e/test_security_plan.py fails on
# a call a policy denies and on a grant no call uses, apart from those it lists with their
# reason (the Lambda service's queue and log calls, ListBucket for 404s, failure-only paths).

locals {
  bucket_arns = { for bucket, created in module.bucket : bucket => created.bucket_arn }

  # The objects under each key prefix, e.g. local.objects.processed.receipts is
  # "<PROCESSED ARN>/receipts/*": the prefixes are the handlers' own (src/sluice/keys.json).
  objects = {
    for bucket, prefixes in var.key_prefixes : bucket => {
      for name, prefix in prefixes : name => "${local.bucket_arns[bucket]}/${prefix}*"
    }
  }

  # What the transform writes for an input beside its receipt (PROCESSED), and where the
  # archive handler keeps an input's current copy (ARCHIVE; older versions: superseded/).
  input_outputs   = [local.objects.processed.data, local.objects.processed.errors, local.objects.processed.thumbnails]
  archived_copies = [local.objects.archive.images, local.objects.archive.data, local.objects.archive.rejected]

  # Multipart writes (streamed outputs, server-side copies of large objects) abort their
  # upload when they fail, so that needs its own action beside PutObject.
  put_object_actions = ["s3:PutObject", "s3:AbortMultipartUpload"]

  # Where the api lets clients write in RAW: <dataset prefix or nothing>uploads/<user>/...
  # (sluice.uploads). `*` in an IAM resource spans slashes, so */uploads/* covers every
  # dataset prefix without naming them here.
  upload_objects = [local.objects.raw.uploads, "${local.bucket_arns.raw}/*/${var.key_prefixes.raw.uploads}*"]

  # Known at plan time (the key's ARN may not be): whether the data is under a KMS key.
  data_key_enabled = var.kms_cmk_enabled || var.kms_key_arn != null
  data_key_policy  = data.aws_iam_policy_document.use_data_key[*].json

  handler_policies = {
    transform = data.aws_iam_policy_document.transform.json
    archive   = data.aws_iam_policy_document.archive.json
    tag       = data.aws_iam_policy_document.tag.json
    bundle    = data.aws_iam_policy_document.bundle.json
  }

  # The role the api hands out one-key credentials of, passed to the api once its policy is
  # attached (credentials handed out before would write nothing).
  upload_role_arn = one([for policy in aws_iam_role_policy.upload : aws_iam_role.upload[0].arn])
}

# --- Grants several roles hold for the same reason -----------------------------------------

# The environment's key (buckets; the queues' own key is the lambda module's grant): every
# role reads objects and writes some (tag: the version ledger's `deleted` records), and a
# multipart upload under SSE-KMS needs Decrypt as well (S3 reads the data key per part).
data "aws_iam_policy_document" "use_data_key" {
  count = local.data_key_enabled ? 1 : 0

  statement {
    sid       = "UseDataKey"
    actions   = ["kms:Decrypt", "kms:GenerateDataKey"]
    resources = [local.data_key_arn]
  }
}

# Per-key leases (sluice.leases): conditional PutObject takes one, conditional DeleteObject
# releases it, GetObject reads who holds it.
data "aws_iam_policy_document" "key_leases" {
  statement {
    sid       = "KeyLeases"
    actions   = ["s3:PutObject", "s3:GetObject", "s3:DeleteObject"]
    resources = [local.objects.processed.leases]
  }
}

data "aws_iam_policy_document" "read_receipts" {
  statement {
    sid       = "ReadReceipts"
    actions   = ["s3:GetObject"]
    resources = [local.objects.processed.receipts]
  }

  # Without ListBucket a missing receipt, record or lease reads as 403 instead of 404.
  statement {
    sid       = "ListProcessed"
    actions   = ["s3:ListBucket"]
    resources = [local.bucket_arns.processed]
  }
}

# A presigned URL carries its signer's permissions: a bundle link only works if the role
# that signs it may read the bundle. Reading the status also makes reruns idempotent.
data "aws_iam_policy_document" "read_bundles" {
  statement {
    sid       = "ReadBundles"
    actions   = ["s3:GetObject"]
    resources = [local.objects.work.bundles]
  }

  # Without ListBucket a missing bundle status reads as 403 instead of 404.
  statement {
    sid       = "ListWork"
    actions   = ["s3:ListBucket"]
    resources = [local.bucket_arns.work]
  }
}

# The api signs uploads (presigned PUTs and parts carry the signer's permissions) and the
# upload role's one-key credentials write them.
data "aws_iam_policy_document" "write_upload_keys" {
  statement {
    sid       = "WriteUploadKeys"
    actions   = local.put_object_actions
    resources = local.upload_objects
  }
}

# What removing a deleted input takes (sluice.deletion, decision 30), for the archive
# handler (deleted from RAW after its receipt) and the tag handler (removed from ARCHIVE):
# under the key's transform lease (a new upload's outputs have the same names), read the
# receipt, record the version deleted, then remove the outputs it lists and the receipt.
data "aws_iam_policy_document" "remove_deleted_inputs" {
  source_policy_documents = [
    data.aws_iam_policy_document.read_receipts.json,
    data.aws_iam_policy_document.key_leases.json,
  ]

  statement {
    sid       = "RecordDeletedInputs"
    actions   = ["s3:PutObject"]
    resources = [local.objects.processed.versions]
  }

  statement {
    sid       = "RemoveDeletedInputsOutputs"
    actions   = ["s3:DeleteObject"]
    resources = concat([local.objects.processed.receipts], local.input_outputs)
  }
}

# --- transform -------------------------------------------------------------------------------

data "aws_iam_policy_document" "transform" {
  # Receipts are read for idempotency; one transform per key holds its lease.
  source_policy_documents = concat(local.data_key_policy, [
    data.aws_iam_policy_document.read_receipts.json,
    data.aws_iam_policy_document.key_leases.json,
  ])

  # The upload is read by ETag (IfMatch), never by version id.
  statement {
    sid       = "ReadRaw"
    actions   = ["s3:GetObject"]
    resources = ["${local.bucket_arns.raw}/*"]
  }

  # An event without a version id (an emitter that omits it) of a version deleted before
  # it was processed: the version is found by its ETag among RAW's versions, so the ledger
  # names it as every other record of it does (one record per version).
  statement {
    sid       = "ListRawVersions"
    actions   = ["s3:ListBucketVersions"]
    resources = [local.bucket_arns.raw]
  }

  statement {
    sid       = "WriteProcessedOutputs"
    actions   = local.put_object_actions
    resources = concat(local.input_outputs, [local.objects.processed.receipts])
  }

  # A new version of an input can produce fewer outputs than the one before (a fixed file
  # has no errors report, a now-rejected image no thumbnails): the stale ones are found
  # with HeadObject and removed.
  statement {
    sid       = "ReplaceStaleOutputs"
    actions   = ["s3:GetObject", "s3:DeleteObject"]
    resources = local.input_outputs
  }

  # A version deleted from RAW while it was transformed wrote over the outputs of the
  # key's archived version (same names): they are copied back from their own versions
  # (PROCESSED is versioned), found by listing the key's versions.
  statement {
    sid       = "RestoreOverwrittenOutputs"
    actions   = ["s3:GetObjectVersion"]
    resources = local.input_outputs
  }

  statement {
    sid       = "ListProcessedVersions"
    actions   = ["s3:ListBucketVersions"]
    resources = [local.bucket_arns.processed]
  }

  # The version ledger records a version deleted from RAW before it could be processed.
  statement {
    sid       = "RecordDeletedVersions"
    actions   = ["s3:PutObject"]
    resources = [local.objects.processed.versions]
  }

  # DeleteItem: the item of a version that died before its receipt and was then deleted
  # from RAW (sluice.image_items.forget_unreceipted).
  statement {
    sid       = "WriteImageMetadata"
    actions   = ["dynamodb:UpdateItem", "dynamodb:DeleteItem"]
    resources = [module.images_table.table_arn]
  }
}

# --- archive ---------------------------------------------------------------------------------

data "aws_iam_policy_document" "archive" {
  # Its trigger, the receipt, is read through remove_deleted_inputs (read_receipts).
  source_policy_documents = concat(local.data_key_policy, [
    data.aws_iam_policy_document.remove_deleted_inputs.json,
  ])

  # Source of the server-side copy, deleted once the copy is verified.
  statement {
    sid = "MoveFromRaw"
    actions = [
      "s3:GetObject",
      "s3:GetObjectVersion",
      "s3:DeleteObject",
      "s3:DeleteObjectVersion",
    ]
    resources = ["${local.bucket_arns.raw}/*"]
  }

  statement {
    sid       = "ListRawAndArchive"
    actions   = ["s3:ListBucket"]
    resources = [local.bucket_arns.raw, local.bucket_arns.archive]
  }

  # Every RAW version older than the one archived is archived too (superseded/).
  statement {
    sid       = "ListRawVersions"
    actions   = ["s3:ListBucketVersions"]
    resources = [local.bucket_arns.raw]
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
    sid       = "SupersedeArchivedCopies"
    actions   = ["s3:DeleteObject"]
    resources = local.archived_copies
  }

  # A key whose newest version is a rejected image withdraws the older image from the
  # library (sluice.image_items): the item's lease, its label memberships and counts
  # (TransactWriteItems is authorised per contained action), then the item. UpdateItem
  # also records where an archived image's original lies (image_items.record_archived).
  statement {
    sid       = "WithdrawImages"
    actions   = ["dynamodb:UpdateItem", "dynamodb:DeleteItem"]
    resources = [module.images_table.table_arn]
  }

  statement {
    sid       = "WithdrawLabels"
    actions   = ["dynamodb:UpdateItem", "dynamodb:DeleteItem"]
    resources = [module.labels_table.table_arn]
  }

  # Destination of the copy. Copies replace tags with none (TaggingDirective REPLACE), so
  # neither GetObjectTagging on RAW nor PutObjectTagging here is needed.
  statement {
    sid       = "WriteArchive"
    actions   = local.put_object_actions
    resources = concat(local.archived_copies, [local.objects.archive.superseded])
  }

  statement {
    sid       = "VerifyArchive"
    actions   = ["s3:GetObject", "s3:GetObjectVersion"]
    resources = concat(local.archived_copies, [local.objects.archive.superseded])
  }
}

# --- tag -------------------------------------------------------------------------------------

data "aws_iam_policy_document" "tag" {
  #checkov:skip=CKV_AWS_356:rekognition:DetectLabels has no resource-level permissions; "*" is the only resource it accepts.
  source_policy_documents = concat(local.data_key_policy, [
    data.aws_iam_policy_document.remove_deleted_inputs.json,
  ])

  statement {
    sid       = "ReadArchivedImages"
    actions   = ["s3:GetObject", "s3:GetObjectVersion"]
    resources = [local.objects.archive.images]
  }

  dynamic "statement" {
    for_each = var.labeler == "rekognition" ? [1] : []

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
    resources = [module.images_table.table_arn]
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
    resources = [local.bucket_arns.archive]
  }

  # A removed superseded copy's record (the removed input's receipt: remove_deleted_inputs).
  statement {
    sid       = "ReadVersionRecords"
    actions   = ["s3:GetObject"]
    resources = [local.objects.processed.versions]
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
    resources = [module.labels_table.table_arn]
  }
}

# --- bundle ----------------------------------------------------------------------------------

data "aws_iam_policy_document" "bundle" {
  source_policy_documents = concat(local.data_key_policy, [
    data.aws_iam_policy_document.read_bundles.json,
  ])

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

  statement {
    sid       = "ReadArchivedImages"
    actions   = ["s3:GetObject"]
    resources = [local.objects.archive.images]
  }

  # A label's images are a Query; "all" reads each label's count item first (GetItem).
  statement {
    sid       = "FindImagesByLabel"
    actions   = ["dynamodb:Query", "dynamodb:GetItem"]
    resources = [module.labels_table.table_arn]
  }

  statement {
    sid       = "ReadImageMetadata"
    actions   = ["dynamodb:BatchGetItem"]
    resources = [module.images_table.table_arn]
  }

  statement {
    sid       = "NotifyBundleReady"
    actions   = ["sns:Publish"]
    resources = [aws_sns_topic.bundles.arn]
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
    resources = ["arn:${local.partition}:sns:${local.region}:${local.account_id}:${local.request_topic_prefix}*"]
  }

  # Archived images in an archive tier are restored before a bundle reads them, and the
  # bundle waits under a marker its sweep deletes once it is made (sluice.restores).
  dynamic "statement" {
    for_each = local.cold_storage != "none" ? [1] : []

    content {
      sid       = "RestoreArchivedImages"
      actions   = ["s3:RestoreObject"]
      resources = [local.objects.archive.images]
    }
  }

  dynamic "statement" {
    for_each = local.cold_storage != "none" ? [1] : []

    content {
      sid       = "ForgetRestoreMarkers"
      actions   = ["s3:DeleteObject"]
      resources = [local.objects.work.restoring]
    }
  }

  # The sweep finds those topics by name; ListTopics has no resource-level permission.
  statement {
    sid       = "FindRequestTopics"
    actions   = ["sns:ListTopics"]
    resources = ["*"]
  }
}

# --- api, and the upload role it hands out ---------------------------------------------------

# Presigned URLs carry their signer's permissions: the api may write the upload keys it
# signs for, and read the thumbnails, originals and bundles it links to.
data "aws_iam_policy_document" "api" {
  count = var.api_enabled ? 1 : 0

  # Receipts: GET /inputs lists and reads them. The key's lease and bundle statuses:
  # DELETE /images/{id} and GET /bundles/{id}.
  source_policy_documents = concat(local.data_key_policy, [
    data.aws_iam_policy_document.write_upload_keys.json,
    data.aws_iam_policy_document.read_receipts.json,
    data.aws_iam_policy_document.key_leases.json,
    data.aws_iam_policy_document.read_bundles.json,
  ])

  # Tells "uploaded, no receipt yet" from "never uploaded" (GET /inputs/{key}) without
  # reading what was uploaded.
  statement {
    sid       = "FindPendingUploads"
    actions   = ["s3:ListBucket"]
    resources = [local.bucket_arns.raw]

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
    resources = [local.bucket_arns.archive]
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
    sid       = "RequestBundles"
    actions   = ["s3:PutObject"]
    resources = [local.objects.work.requests]
  }

  statement {
    sid       = "ReadAndWithdrawImages"
    actions   = ["dynamodb:GetItem", "dynamodb:Scan", "dynamodb:BatchGetItem", "dynamodb:UpdateItem", "dynamodb:DeleteItem"]
    resources = [module.images_table.table_arn]
  }

  # TransactWriteItems is authorised per contained action (withdrawal: delete membership,
  # decrement count).
  statement {
    sid       = "ReadAndWithdrawLabels"
    actions   = ["dynamodb:Query", "dynamodb:GetItem", "dynamodb:DeleteItem", "dynamodb:UpdateItem"]
    resources = [module.labels_table.table_arn]
  }
}

# Assumed only by the api, with a session policy naming exactly one key: the credentials
# it returns can write that key and nothing else (the intersection of both policies).
data "aws_iam_policy_document" "upload_trust" {
  count = var.api_enabled ? 1 : 0

  statement {
    actions = ["sts:AssumeRole"]

    principals {
      type        = "AWS"
      identifiers = [module.api_function[0].role_arn]
    }
  }
}

resource "aws_iam_role" "upload" {
  count = var.api_enabled ? 1 : 0

  name                 = "${local.name}-upload"
  description          = "Assumed by the sluice api with a one-key session policy, for SDK and aws CLI uploads to RAW."
  assume_role_policy   = data.aws_iam_policy_document.upload_trust[0].json
  max_session_duration = 3600
  tags                 = local.tags
}

data "aws_iam_policy_document" "upload" {
  count = var.api_enabled ? 1 : 0

  source_policy_documents = concat(local.data_key_policy, [
    data.aws_iam_policy_document.write_upload_keys.json,
  ])
}

resource "aws_iam_role_policy" "upload" {
  count = var.api_enabled ? 1 : 0

  name   = "${local.name}-upload"
  role   = aws_iam_role.upload[0].id
  policy = data.aws_iam_policy_document.upload[0].json
}
