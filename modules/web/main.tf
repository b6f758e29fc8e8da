# The static web app of one environment: a private bucket behind CloudFront with origin
# access control, security headers on every response, and config.json written next to the
# app so one build serves every environment (docs/decisions.md, decision 11).

data "aws_caller_identity" "current" {}

data "aws_region" "current" {}

locals {
  bucket_name = "${var.name}-${data.aws_caller_identity.current.account_id}-${data.aws_region.current.name}"

  # Every app file is uploaded as it is: no build step (web/README.md).
  content_types = {
    html = "text/html; charset=utf-8"
    css  = "text/css; charset=utf-8"
    js   = "text/javascript; charset=utf-8"
    json = "application/json"
    svg  = "image/svg+xml"
    png  = "image/png"
    ico  = "image/x-icon"
  }
  app_files = {
    for path in fileset(var.app_dir, "**") : path => local.content_types[reverse(split(".", path))[0]]
    if contains(keys(local.content_types), reverse(split(".", path))[0]) && path != "config.json"
  }

  # The modules are not content-hashed, so browsers and CloudFront revalidate every file
  # (ETags make that a 304); config.json and index.html are never stored at all.
  cache_control = {
    default  = "no-cache"
    no_store = "no-store"
  }

  # One Content-Security-Policy: the app's own origin, plus exactly the origins it calls
  # (API, user pool, RAW uploads) and shows images from (PROCESSED thumbnails).
  content_security_policy = join("; ", [
    "default-src 'none'",
    "script-src 'self'",
    "style-src 'self'",
    "img-src ${join(" ", concat(["'self'", "data:"], var.image_sources))}",
    "connect-src ${join(" ", concat(["'self'"], var.connect_sources))}",
    "base-uri 'none'",
    "form-action 'self'",
    "frame-ancestors 'none'",
    "object-src 'none'",
  ])

  # The headers the response headers policy sends; the output hands the same values to the
  # local runtime, which serves the app with them (src/sluice/local/stack/webserver.py).
  response_headers = {
    "Content-Security-Policy"      = local.content_security_policy
    "Strict-Transport-Security"    = "max-age=${var.hsts_max_age_seconds}; includeSubDomains; preload"
    "X-Content-Type-Options"       = "nosniff"
    "X-Frame-Options"              = "DENY"
    "Referrer-Policy"              = "no-referrer"
    "Permissions-Policy"           = "camera=(), microphone=(), geolocation=(), payment=()"
    "Cross-Origin-Opener-Policy"   = "same-origin"
    "Cross-Origin-Resource-Policy" = "same-origin"
  }
  custom_headers = ["Permissions-Policy", "Cross-Origin-Opener-Policy", "Cross-Origin-Resource-Policy"]

  # AWS managed cache policy "UseOriginCacheControlHeaders": the objects' Cache-Control
  # decides (no-cache, no-store above), with a minimum TTL of 0.
  cache_policy_id = "83da9c7e-98b4-4e11-a168-04f0df8e2c65"
}

# --- The bucket: private, encrypted, TLS only, readable by this distribution only -------------

resource "aws_s3_bucket" "this" {
  #checkov:skip=CKV_AWS_18:Access logs would need a log bucket; CloudFront standard logs can be enabled per account.
  #checkov:skip=CKV_AWS_144:The app is rebuilt from the repository; replication adds nothing.
  #checkov:skip=CKV_AWS_145:SSE-S3: a KMS key would need CloudFront in its key policy for public, non-secret files.
  #checkov:skip=CKV2_AWS_62:Nothing listens to the app's bucket.
  #checkov:skip=CKV2_AWS_61:The app's files are replaced, never accumulated; versioning keeps the previous ones.
  bucket        = local.bucket_name
  force_destroy = var.force_destroy
  tags          = var.tags
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

resource "aws_s3_bucket_server_side_encryption_configuration" "this" {
  bucket = aws_s3_bucket.this.id

  rule {
    apply_server_side_encryption_by_default {
      sse_algorithm = "AES256"
    }
  }
}

data "aws_iam_policy_document" "bucket" {
  # Only this distribution, through origin access control, reads the app.
  statement {
    sid       = "AllowCloudFrontRead"
    actions   = ["s3:GetObject"]
    resources = ["${aws_s3_bucket.this.arn}/*"]

    principals {
      type        = "Service"
      identifiers = ["cloudfront.amazonaws.com"]
    }

    condition {
      test     = "StringEquals"
      variable = "AWS:SourceArn"
      values   = [aws_cloudfront_distribution.this.arn]
    }
  }

  dynamic "statement" {
    for_each = var.deny_insecure_transport ? [1] : []

    content {
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
}

resource "aws_s3_bucket_policy" "this" {
  bucket = aws_s3_bucket.this.id
  policy = data.aws_iam_policy_document.bucket.json

  # S3 rejects a bucket policy while public access settings are still being applied.
  depends_on = [aws_s3_bucket_public_access_block.this]
}

# --- The files ------------------------------------------------------------------------------

resource "aws_s3_object" "app" {
  for_each = local.app_files

  bucket        = aws_s3_bucket.this.id
  key           = each.key
  source        = "${var.app_dir}/${each.key}"
  source_hash   = filemd5("${var.app_dir}/${each.key}")
  content_type  = each.value
  cache_control = each.key == "index.html" ? local.cache_control.no_store : local.cache_control.default
  tags          = var.tags

  # Written once versioning is on, so every file has a real version. A file written
  # before it (a race: nothing ordered them) has the version "null"; destroying it then
  # leaves a delete marker beside it, which moto 5.2 fails to remove (500 on
  # DeleteObjects), and the bucket's destroy retried until the e2e command timed out.
  depends_on = [aws_s3_bucket_versioning.this]
}

resource "aws_s3_object" "config" {
  bucket        = aws_s3_bucket.this.id
  key           = "config.json"
  content       = jsonencode(var.app_config)
  content_type  = "application/json"
  cache_control = local.cache_control.no_store
  tags          = var.tags

  depends_on = [aws_s3_bucket_versioning.this] # as the app's files, above
}

# --- CloudFront -----------------------------------------------------------------------------

resource "aws_cloudfront_origin_access_control" "this" {
  name                              = var.name
  description                       = "CloudFront reads ${local.bucket_name} with SigV4."
  origin_access_control_origin_type = "s3"
  signing_behavior                  = "always"
  signing_protocol                  = "sigv4"
}

resource "aws_cloudfront_response_headers_policy" "this" {
  count = var.security_headers_policy ? 1 : 0

  name    = var.name
  comment = "Security headers of the sluice web app."

  security_headers_config {
    content_security_policy {
      content_security_policy = local.content_security_policy
      override                = true
    }

    strict_transport_security {
      access_control_max_age_sec = var.hsts_max_age_seconds
      include_subdomains         = true
      preload                    = true
      override                   = true
    }

    content_type_options {
      override = true
    }

    frame_options {
      frame_option = "DENY"
      override     = true
    }

    referrer_policy {
      referrer_policy = local.response_headers["Referrer-Policy"]
      override        = true
    }
  }

  custom_headers_config {
    dynamic "items" {
      for_each = local.custom_headers

      content {
        header   = items.value
        value    = local.response_headers[items.value]
        override = true
      }
    }
  }
}

resource "aws_cloudfront_distribution" "this" {
  #checkov:skip=CKV_AWS_68:A WAF web ACL is an account-level choice with its own cost; the API behind it has throttling and a JWT authorizer.
  #checkov:skip=CKV_AWS_86:Standard logs need a log bucket with ACLs; enable them per account.
  #checkov:skip=CKV_AWS_174:The default *.cloudfront.net certificate; a custom domain brings its own TLS 1.2 policy.
  #checkov:skip=CKV_AWS_310:One origin: the app is static and the bucket is regional and durable.
  #checkov:skip=CKV_AWS_374:No geo restriction: the app serves wherever its users are.
  #checkov:skip=CKV2_AWS_42:The default certificate (no custom domain).
  #checkov:skip=CKV2_AWS_47:No WAF (see CKV_AWS_68).
  comment             = var.name
  enabled             = true
  is_ipv6_enabled     = true
  http_version        = "http2and3"
  default_root_object = "index.html"
  price_class         = var.price_class
  wait_for_deployment = var.wait_for_deployment
  tags                = var.tags

  origin {
    origin_id                = "app"
    domain_name              = aws_s3_bucket.this.bucket_regional_domain_name
    origin_access_control_id = aws_cloudfront_origin_access_control.this.id
  }

  default_cache_behavior {
    target_origin_id           = "app"
    viewer_protocol_policy     = "redirect-to-https"
    allowed_methods            = ["GET", "HEAD"]
    cached_methods             = ["GET", "HEAD"]
    compress                   = true
    cache_policy_id            = local.cache_policy_id
    response_headers_policy_id = var.security_headers_policy ? aws_cloudfront_response_headers_policy.this[0].id : null
  }

  restrictions {
    geo_restriction {
      restriction_type = "none"
    }
  }

  viewer_certificate {
    cloudfront_default_certificate = true
  }
}
