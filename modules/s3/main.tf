# One private, versioned, encrypted bucket that only accepts TLS, with the lifecycle rules
# every sluice bucket shares.

resource "aws_s3_bucket" "this" {
  #checkov:skip=CKV_AWS_18:Server access logs would need a log bucket per environment; CloudTrail data events are the audit trail if an account needs one.
  #checkov:skip=CKV_AWS_144:Cross-region replication is a disaster-recovery decision per account, not part of the pipeline; ARCHIVE can add it outside this module.
  #checkov:skip=CKV2_AWS_62:Event notifications are configured by the notifications module, one configuration per bucket, only where a handler listens.
  #checkov:skip=CKV_AWS_145:SSE-S3 is the default so the buckets work without a customer key; pass kms_key_arn for SSE-KMS.
  #checkov:skip=CKV_AWS_19:Always encrypted by aws_s3_bucket_server_side_encryption_configuration.this (SSE-S3, or SSE-KMS with kms_key_arn); checkov cannot follow the pipeline's conditional key into the algorithm.
  bucket        = var.bucket_name
  force_destroy = var.force_destroy
  tags          = var.tags

  # Object Lock can only be turned on when a bucket is created (the provider replaces the
  # bucket when this changes) and never turned off again: see README, "Object Lock".
  object_lock_enabled = var.object_lock_days != null
}

resource "aws_s3_bucket_ownership_controls" "this" {
  bucket = aws_s3_bucket.this.id

  rule {
    object_ownership = "BucketOwnerEnforced"
  }
}

resource "aws_s3_bucket_public_access_block" "this" {
  bucket = aws_s3_bucket.this.id

  block_public_acls       = true
  block_public_policy     = true
  ignore_public_acls      = true
  restrict_public_buckets = true
}

resource "aws_s3_bucket_versioning" "this" {
  bucket = aws_s3_bucket.this.id

  versioning_configuration {
    status = "Enabled"
  }
}

# Governance mode: nobody deletes or overwrites a locked version before its retention ends,
# except a principal granted s3:BypassGovernanceRetention who asks for it explicitly
# (compliance mode would bind the account root too, with no way back).
resource "aws_s3_bucket_object_lock_configuration" "this" {
  count = var.object_lock_days == null ? 0 : 1

  bucket = aws_s3_bucket.this.id

  rule {
    default_retention {
      mode = "GOVERNANCE"
      days = var.object_lock_days
    }
  }

  # Object Lock needs versioning.
  depends_on = [aws_s3_bucket_versioning.this]
}

resource "aws_s3_bucket_server_side_encryption_configuration" "this" {
  bucket = aws_s3_bucket.this.id

  rule {
    apply_server_side_encryption_by_default {
      sse_algorithm     = var.kms_key_arn == null ? "AES256" : "aws:kms"
      kms_master_key_id = var.kms_key_arn
    }
    # S3 Bucket Keys cut KMS requests (and cost) by orders of magnitude; no effect on SSE-S3.
    bucket_key_enabled = var.kms_key_arn != null
  }
}

data "aws_iam_policy_document" "this" {
  count = var.deny_insecure_transport ? 1 : 0

  statement {
    sid       = "DenyInsecureTransport"
    effect    = "Deny"
    actions   = ["s3:*"]
    resources = [aws_s3_bucket.this.arn, "${aws_s3_bucket.this.arn}/*"]

    principals {
      type        = "*"
      identifiers = ["*"]
    }

    condition {
      test     = "Bool"
      variable = "aws:SecureTransport"
      values   = ["false"]
    }
  }
}

resource "aws_s3_bucket_policy" "this" {
  count = var.deny_insecure_transport ? 1 : 0

  bucket = aws_s3_bucket.this.id
  policy = data.aws_iam_policy_document.this[0].json

  # S3 rejects a bucket policy while public access settings are still being applied.
  depends_on = [aws_s3_bucket_public_access_block.this]
}

resource "aws_s3_bucket_lifecycle_configuration" "this" {
  bucket = aws_s3_bucket.this.id

  rule {
    id     = "abort-incomplete-multipart-uploads"
    status = "Enabled"

    filter {}

    abort_incomplete_multipart_upload {
      days_after_initiation = var.abort_incomplete_multipart_upload_days
    }
  }

  rule {
    id     = "expire-noncurrent-versions"
    status = "Enabled"

    filter {}

    noncurrent_version_expiration {
      noncurrent_days = var.noncurrent_version_expiration_days
    }

    # Once its last noncurrent version is gone, a delete marker is clutter.
    expiration {
      expired_object_delete_marker = true
    }
  }

  dynamic "rule" {
    for_each = var.expiring_prefixes

    content {
      id     = "expire-${trimsuffix(rule.key, "/")}"
      status = "Enabled"

      filter {
        prefix = rule.key
      }

      expiration {
        days = rule.value
      }

      # Versioning keeps the expired object as a noncurrent version: drop that too.
      noncurrent_version_expiration {
        noncurrent_days = 1
      }
    }
  }

  dynamic "rule" {
    for_each = var.transitions

    content {
      id     = "transition-${trimsuffix(rule.key, "/")}-to-${lower(rule.value.storage_class)}"
      status = "Enabled"

      filter {
        prefix = rule.key
      }

      transition {
        days          = rule.value.days
        storage_class = rule.value.storage_class
      }
    }
  }

  # Lifecycle rules on a versioned bucket are only well defined once versioning is on.
  depends_on = [aws_s3_bucket_versioning.this]
}

# Intelligent-Tiering's archive tiers are opt-in per bucket (and prefix); objects there
# need a RestoreObject before they can be read again.
resource "aws_s3_bucket_intelligent_tiering_configuration" "this" {
  count = var.intelligent_tiering == null ? 0 : 1

  bucket = aws_s3_bucket.this.id
  name   = "archive-${trimsuffix(var.intelligent_tiering.prefix, "/")}"

  filter {
    prefix = var.intelligent_tiering.prefix
  }

  dynamic "tiering" {
    for_each = var.intelligent_tiering.archive_access_days == null ? [] : [var.intelligent_tiering.archive_access_days]

    content {
      access_tier = "ARCHIVE_ACCESS"
      days        = tiering.value
    }
  }

  dynamic "tiering" {
    for_each = var.intelligent_tiering.deep_archive_access_days == null ? [] : [var.intelligent_tiering.deep_archive_access_days]

    content {
      access_tier = "DEEP_ARCHIVE_ACCESS"
      days        = tiering.value
    }
  }
}

resource "aws_s3_bucket_cors_configuration" "this" {
  count = length(var.cors_rules) > 0 ? 1 : 0

  bucket = aws_s3_bucket.this.id

  dynamic "cors_rule" {
    for_each = var.cors_rules

    content {
      allowed_methods = cors_rule.value.allowed_methods
      allowed_origins = cors_rule.value.allowed_origins
      allowed_headers = cors_rule.value.allowed_headers
      expose_headers  = cors_rule.value.expose_headers
      max_age_seconds = cors_rule.value.max_age_seconds
    }
  }
}
