variable "name_prefix" {
  description = "Prefix of every resource name; resources are named <name_prefix>-<environment>-<thing>."
  type        = string
  default     = "sluice"
  nullable    = false

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]*[a-z0-9]$", var.name_prefix))
    error_message = "name_prefix must be lower-case letters, digits and hyphens, starting with a letter."
  }
}

variable "key_prefixes" {
  description = "Every key prefix the handlers use, by bucket and name: src/sluice/keys.json, which the root module reads (sluice.keys reads the same file). Scopes the IAM grants and the bucket notifications."
  type = object({
    raw       = object({ uploads = string })
    processed = object({ data = string, errors = string, thumbnails = string, receipts = string, versions = string, leases = string })
    archive   = object({ images = string, data = string, rejected = string, superseded = string })
    work      = object({ requests = string, bundles = string, restoring = string })
  })
}

variable "environment" {
  description = "Name of the environment (local, dev, prod, ...)."
  type        = string

  validation {
    condition     = can(regex("^[a-z][a-z0-9]*$", var.environment))
    error_message = "environment must be lower-case letters and digits, starting with a letter."
  }
}

variable "artifacts_dir" {
  description = "Directory holding sluice-code.zip and sluice-layer-<architecture>.zip (scripts/build_artifacts.py)."
  type        = string
}

variable "architecture" {
  description = "Instruction set of the functions and the layer: x86_64 or arm64."
  type        = string
  default     = "arm64"
  nullable    = false

  validation {
    condition     = contains(["x86_64", "arm64"], var.architecture)
    error_message = "architecture must be x86_64 or arm64."
  }
}

variable "functions" {
  description = "Per-handler overrides (transform, archive, tag, bundle; api: memory and timeout only) of memory, timeout and event source mapping settings."
  type = map(object({
    memory_size                        = optional(number)
    timeout                            = optional(number)
    batch_size                         = optional(number)
    maximum_batching_window_in_seconds = optional(number)
    maximum_concurrency                = optional(number)
  }))
  default  = {}
  nullable = false

  validation {
    condition     = alltrue([for name in keys(var.functions) : contains(["transform", "archive", "tag", "bundle", "api"], name)])
    error_message = "functions keys must be among transform, archive, tag, bundle and api."
  }
}

variable "event_source_mappings_enabled" {
  description = "Whether the event source mappings poll the queues (false where a local runner serves them)."
  type        = bool
  default     = true
  nullable    = false
}

variable "snap_start" {
  description = "Lambda SnapStart for every handler: init runs when a version is published and cold starts restore its snapshot; the queues invoke each function's `live` alias. Emulators (moto) do not implement it."
  type        = bool
  default     = false
  nullable    = false
}

variable "max_receive_count" {
  description = "Receives of one message before its queue moves it to the dead-letter queue."
  type        = number
  default     = 5
  nullable    = false
}

variable "log_retention_days" {
  description = "Days the handlers' logs are kept."
  type        = number
  default     = 30
  nullable    = false
}

variable "log_level" {
  description = "Powertools log level of the handlers (POWERTOOLS_LOG_LEVEL)."
  type        = string
  default     = "INFO"
  nullable    = false

  validation {
    condition     = contains(["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"], var.log_level)
    error_message = "log_level must be DEBUG, INFO, WARNING, ERROR or CRITICAL."
  }
}

variable "thumbnail_sizes" {
  description = "Longest side in pixels of each thumbnail the transform handler writes."
  type        = list(number)
  default     = [128, 512]
  nullable    = false

  validation {
    condition     = length(var.thumbnail_sizes) > 0 && alltrue([for size in var.thumbnail_sizes : size >= 16 && size <= 4096])
    error_message = "thumbnail_sizes must list at least one size between 16 and 4096."
  }
}

variable "thumbnail_format" {
  description = "Format of the thumbnails: JPEG, WEBP or PNG."
  type        = string
  default     = "JPEG"
  nullable    = false

  validation {
    condition     = contains(["JPEG", "WEBP", "PNG"], var.thumbnail_format)
    error_message = "thumbnail_format must be JPEG, WEBP or PNG."
  }
}

variable "thumbnail_quality" {
  description = "Encoder quality of the thumbnails (1-95)."
  type        = number
  default     = 85
  nullable    = false
}

variable "max_image_pixels" {
  description = "Largest image (width x height) the transform handler decodes; larger ones are rejected."
  type        = number
  default     = 64000000
  nullable    = false
}

variable "max_image_bytes" {
  description = "Largest image file in bytes the transform handler reads; larger ones are rejected."
  type        = number
  default     = 104857600
  nullable    = false
}

variable "datasets" {
  description = "The transform handler's datasets, by name: the RAW key prefix that selects one (e.g. retina/), its JSON Schema file (a file shipped in src/sluice/datasets/), the fields written to PROCESSED, and whether it also takes JSON files at the bucket root (keys without /; at most one dataset). Passed as the transform's DATASETS (JSON) and validated at its cold start (schema file, projected fields, overlapping prefixes); null keeps the handler's default, src/sluice/datasets/datasets.json."
  type = map(object({
    prefix     = string
    schema     = string
    projection = list(string)
    root       = optional(bool, false)
  }))
  default = null

  validation {
    # The cheap structural rules, checked at plan time too; the handler checks them all.
    condition = var.datasets == null ? true : alltrue([
      for dataset in values(var.datasets) :
      can(regex("^[^/]", dataset.prefix)) && endswith(dataset.prefix, "/") && length(dataset.projection) > 0
    ])
    error_message = "Each dataset needs a prefix ending in / (not starting with /) and at least one projected field."
  }

  validation {
    condition     = var.datasets == null ? true : length([for dataset in values(var.datasets) : dataset if dataset.root]) <= 1
    error_message = "At most one dataset may take the files at the bucket root (root = true)."
  }
}

variable "max_data_bytes" {
  description = "Largest data file (JSON, JSON Lines) in bytes the transform handler reads; larger ones are rejected unread (data_too_large). Keep it what the transform function can read within its timeout."
  type        = number
  default     = 536870912
  nullable    = false

  validation {
    condition     = var.max_data_bytes >= 1 && floor(var.max_data_bytes) == var.max_data_bytes
    error_message = "max_data_bytes must be a whole number of bytes, at least 1."
  }
}

variable "archive_storage_class" {
  description = "S3 storage class of archived objects."
  type        = string
  default     = "STANDARD"
  nullable    = false

  validation {
    condition     = contains(["STANDARD", "STANDARD_IA", "ONEZONE_IA", "INTELLIGENT_TIERING", "GLACIER_IR"], var.archive_storage_class)
    error_message = "archive_storage_class must be STANDARD, STANDARD_IA, ONEZONE_IA, INTELLIGENT_TIERING or GLACIER_IR (classes readable without a restore)."
  }
}

variable "archive_cold_storage" {
  description = "Archived images (ARCHIVE images/) in cold storage, or null (the default) to keep them instantly readable. mode = intelligent_tiering (needs archive_storage_class = INTELLIGENT_TIERING) opts them into the Archive Access tier after archive_access_days (90-730) and/or the Deep Archive Access tier after deep_archive_access_days (180-730) without access; mode = glacier moves them to Glacier Flexible Retrieval by lifecycle rule glacier_after_days (default 30) after archiving. A bundle that includes such images restores them first: restore_tier Standard (default), Bulk or Expedited; restored Glacier copies kept restore_days (1-30, default 1)."
  type = object({
    mode                     = string
    archive_access_days      = optional(number)
    deep_archive_access_days = optional(number)
    glacier_after_days       = optional(number, 30)
    restore_tier             = optional(string, "Standard")
    restore_days             = optional(number, 1)
  })
  default = null

  # Terraform's || and && evaluate both sides: every check on the object is behind a
  # conditional, which does not.
  validation {
    condition     = var.archive_cold_storage == null ? true : contains(["intelligent_tiering", "glacier"], var.archive_cold_storage.mode)
    error_message = "archive_cold_storage.mode must be intelligent_tiering or glacier (or leave archive_cold_storage null)."
  }

  validation {
    condition = var.archive_cold_storage == null ? true : var.archive_cold_storage.mode != "intelligent_tiering" ? true : alltrue([
      var.archive_cold_storage.archive_access_days != null || var.archive_cold_storage.deep_archive_access_days != null,
      var.archive_cold_storage.archive_access_days == null ? true : var.archive_cold_storage.archive_access_days >= 90 && var.archive_cold_storage.archive_access_days <= 730,
      var.archive_cold_storage.deep_archive_access_days == null ? true : var.archive_cold_storage.deep_archive_access_days >= 180 && var.archive_cold_storage.deep_archive_access_days <= 730,
      var.archive_cold_storage.archive_access_days == null || var.archive_cold_storage.deep_archive_access_days == null ? true : var.archive_cold_storage.deep_archive_access_days > var.archive_cold_storage.archive_access_days,
    ])
    error_message = "intelligent_tiering needs archive_access_days (90-730) and/or deep_archive_access_days (180-730, more than archive_access_days)."
  }

  validation {
    condition     = var.archive_cold_storage == null ? true : var.archive_cold_storage.glacier_after_days >= 0 && floor(var.archive_cold_storage.glacier_after_days) == var.archive_cold_storage.glacier_after_days
    error_message = "archive_cold_storage.glacier_after_days must be a whole number of days, 0 or more."
  }

  validation {
    condition     = var.archive_cold_storage == null ? true : contains(["Standard", "Bulk", "Expedited"], var.archive_cold_storage.restore_tier)
    error_message = "archive_cold_storage.restore_tier must be Standard, Bulk or Expedited."
  }

  validation {
    condition     = var.archive_cold_storage == null ? true : var.archive_cold_storage.restore_days >= 1 && var.archive_cold_storage.restore_days <= 30
    error_message = "archive_cold_storage.restore_days must be between 1 and 30."
  }

  validation {
    condition     = var.archive_cold_storage == null ? true : var.archive_cold_storage.mode != "intelligent_tiering" || var.archive_storage_class == "INTELLIGENT_TIERING"
    error_message = "archive_cold_storage.mode = intelligent_tiering needs archive_storage_class = INTELLIGENT_TIERING (the archive handler writes the objects in that class)."
  }
}

variable "labeler" {
  description = "How the tag handler labels images: rekognition, or offline (no AWS call; for emulators)."
  type        = string
  default     = "rekognition"
  nullable    = false

  validation {
    condition     = contains(["rekognition", "offline"], var.labeler)
    error_message = "labeler must be rekognition or offline."
  }
}

variable "label_min_confidence" {
  description = "Minimum confidence (0-100) of a label the tag handler keeps."
  type        = number
  default     = 80
  nullable    = false
}

variable "label_max_labels" {
  description = "Most labels the tag handler keeps per image (1-100)."
  type        = number
  default     = 10
  nullable    = false
}

variable "bundle_url_ttl_seconds" {
  description = "Lifetime of a bundle's presigned download URL in seconds (at most 7 days)."
  type        = number
  default     = 86400
  nullable    = false

  validation {
    condition     = var.bundle_url_ttl_seconds >= 1 && var.bundle_url_ttl_seconds <= 604800
    error_message = "bundle_url_ttl_seconds must be between 1 and 604800."
  }
}

variable "bundle_expiration_days" {
  description = "Days after which WORK requests/ and bundles/ are deleted; a request's notification topic is deleted by then too, delivered or not."
  type        = number
  default     = 1
  nullable    = false

  validation {
    condition     = var.bundle_expiration_days >= 1 && var.bundle_expiration_days <= 3650 && floor(var.bundle_expiration_days) == var.bundle_expiration_days
    error_message = "bundle_expiration_days must be a whole number of days between 1 and 3650."
  }
}

variable "bundle_sweep_minutes" {
  description = "Minutes between two sweeps of the bundle handler: it sends the link to recipients who confirmed their email subscription since, and deletes request topics past their expiry (docs/decisions.md, 34)."
  type        = number
  default     = 5
  nullable    = false

  validation {
    condition     = var.bundle_sweep_minutes >= 1 && var.bundle_sweep_minutes <= 60 && floor(var.bundle_sweep_minutes) == var.bundle_sweep_minutes
    error_message = "bundle_sweep_minutes must be a whole number between 1 and 60."
  }
}

variable "raw_cors_allowed_origins" {
  description = "Origins allowed to upload to RAW from a browser with presigned URLs; an empty list disables CORS."
  type        = list(string)
  default     = ["*"]
  nullable    = false
}

variable "auth_enabled" {
  description = "Whether the environment has its Cognito user pool (sign-in for the HTTP API and the web app); false only where the user pool cannot exist (an emulator without Cognito)."
  type        = bool
  default     = true
}

variable "api_enabled" {
  description = "Whether the environment has the HTTP API (API Gateway), its api function and the roles they use; needs auth_enabled (the API's JWT authorizer trusts the user pool). false only where API Gateway v2 cannot exist (an emulator without it)."
  type        = bool
  default     = true

  validation {
    condition     = !var.api_enabled || var.auth_enabled
    error_message = "api_enabled needs auth_enabled: the API's authorizer trusts the user pool."
  }
}

variable "api_routes" {
  description = "Route keys of the HTTP API (METHOD /path), each with whether it needs a token; the root module reads them from docs/openapi.yaml."
  type = map(object({
    authorized = bool
  }))
}

variable "web_origins" {
  description = "Origins of the web app: the API's CORS origins and the hosted UI's callback and sign-out URLs."
  type        = list(string)
  default     = []
  nullable    = false
}

variable "api_throttling_burst_limit" {
  description = "Burst limit (requests) of every API route."
  type        = number
  default     = 50
  nullable    = false
}

variable "api_throttling_rate_limit" {
  description = "Steady-state rate limit (requests per second) of every API route."
  type        = number
  default     = 25
  nullable    = false
}

variable "max_upload_bytes" {
  description = "Largest file the API hands out an upload for (MAX_UPLOAD_BYTES); larger requests get 413."
  type        = number
  default     = 5368709120
  nullable    = false

  validation {
    condition     = var.max_upload_bytes >= 1 && var.max_upload_bytes <= 5497558138880
    error_message = "max_upload_bytes must be between 1 and 5 TiB (S3's object limit)."
  }
}

variable "upload_url_ttl_seconds" {
  description = "Lifetime of presigned upload URLs and one-key credentials in seconds (UPLOAD_URL_TTL_SECONDS, 900-3600)."
  type        = number
  default     = 900
  nullable    = false

  validation {
    condition     = var.upload_url_ttl_seconds >= 900 && var.upload_url_ttl_seconds <= 3600
    error_message = "upload_url_ttl_seconds must be between 900 (STS's minimum) and 3600 (the upload role's session limit)."
  }
}

variable "link_ttl_seconds" {
  description = "Lifetime of the thumbnail and original links GET /images/{id} returns (LINK_TTL_SECONDS)."
  type        = number
  default     = 900
  nullable    = false

  validation {
    condition     = var.link_ttl_seconds >= 1 && var.link_ttl_seconds <= 604800
    error_message = "link_ttl_seconds must be between 1 and 604800."
  }
}

variable "seed_user" {
  description = "A user the user pool starts with (a temporary password, changed at first sign-in) and its groups; null for none. For throw-away environments: the password sits in the variables."
  type = object({
    email              = string
    temporary_password = string
    groups             = list(string)
  })
  default = null
}

variable "alert_emails" {
  description = "Email addresses subscribed to the alerts topic (each must confirm its subscription)."
  type        = list(string)
  default     = []
  nullable    = false
}

variable "kms_key_arn" {
  description = "ARN of an existing customer managed KMS key for SSE-KMS on the buckets and the tables; null uses SSE-S3 and the AWS managed DynamoDB key. Not together with kms_cmk_enabled."
  type        = string
  default     = null
}

variable "kms_cmk_enabled" {
  description = "Whether the environment creates its own customer managed KMS key (rotation on) and encrypts the buckets (SSE-KMS with S3 Bucket Keys), the tables, the handler queues and the dead-letter queue with it; the function roles get kms:Decrypt (and kms:GenerateDataKey where they write) on that key only."
  type        = bool
  default     = false
  nullable    = false
}

variable "archive_noncurrent_retention_days" {
  description = "Days the ARCHIVE bucket keeps a noncurrent object version (an overwritten or deleted archived object) before its lifecycle rule deletes it."
  type        = number
  default     = 30
  nullable    = false

  validation {
    condition     = var.archive_noncurrent_retention_days >= 1
    error_message = "archive_noncurrent_retention_days must be at least 1."
  }
}

variable "archive_object_lock_days" {
  description = "S3 Object Lock for the ARCHIVE bucket: days of default retention in governance mode for every new version, or null for none. Takes effect only when the bucket is created; on an existing bucket Terraform plans a replacement (modules/s3/README.md, Object Lock)."
  type        = number
  default     = null

  validation {
    condition     = var.archive_object_lock_days == null || try(var.archive_object_lock_days >= 1, false)
    error_message = "archive_object_lock_days must be null or at least 1."
  }
}

variable "bundle_topic_kms_key_id" {
  description = "KMS key (id, ARN or alias) that encrypts the bundle topic."
  type        = string
  default     = "alias/aws/sns"
  nullable    = false
}

variable "deny_insecure_transport" {
  description = "Whether bucket policies deny requests not made over TLS (false only for an emulator served over plain HTTP)."
  type        = bool
  default     = true
  nullable    = false
}

variable "force_destroy" {
  description = "Whether destroy may delete non-empty buckets and protected tables (only for throw-away environments)."
  type        = bool
  default     = false
  nullable    = false
}

variable "tags" {
  description = "Tags added to every resource of the environment."
  type        = map(string)
  default     = {}
  nullable    = false
}

variable "web_app_dir" {
  description = "Directory of the static web app (the repository's web/); null deploys no web app (required without the API: the app calls it)."
  type        = string
  default     = null

  validation {
    condition     = var.web_app_dir == null || var.api_enabled
    error_message = "The web app needs the HTTP API (api_enabled): it calls it."
  }
}

variable "web_sign_in" {
  description = "How the web app signs in: hosted_ui (authorization code + PKCE, the web client) or password (a form calling USER_PASSWORD_AUTH with the CLI's client, for an emulator without a hosted UI)."
  type        = string
  default     = "hosted_ui"
  nullable    = false

  validation {
    condition     = contains(["hosted_ui", "password"], var.web_sign_in)
    error_message = "web_sign_in must be hosted_ui or password."
  }
}

variable "web_security_headers_policy" {
  description = "Whether CloudFront sends the web app's security headers through a response headers policy (false only for an emulator without that API)."
  type        = bool
  default     = true
  nullable    = false
}

variable "web_wait_for_deployment" {
  description = "Whether apply waits until the web app's distribution is deployed."
  type        = bool
  default     = true
  nullable    = false
}

variable "web_multipart_threshold_bytes" {
  description = "Files larger than this are uploaded by the web app in parts (POST /uploads/multipart)."
  type        = number
  default     = 67108864
  nullable    = false
}

variable "web_datasets" {
  description = "Dataset names the web app offers for data files (the root module reads them from src/sluice/datasets/datasets.json)."
  type        = list(string)
  default     = []
  nullable    = false
}

variable "service_endpoint" {
  description = "URL that serves every AWS service in place of AWS's own endpoints (an emulator), so the web app calls the user pool and buckets there; null in AWS."
  type        = string
  default     = null
}

variable "runtime_urls" {
  description = "Where a local runtime serves the HTTP API and the web app in place of API Gateway and CloudFront (sluice up sets it from its ports); null in AWS."
  type = object({
    api = string
    web = string
  })
  default = null
}
