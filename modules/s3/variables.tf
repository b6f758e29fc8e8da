variable "bucket_name" {
  description = "Globally unique name of the bucket."
  type        = string
}

variable "kms_key_arn" {
  description = "ARN of a KMS key for SSE-KMS; null encrypts with SSE-S3 (AES256)."
  type        = string
  default     = null
}

variable "deny_insecure_transport" {
  description = "Whether the bucket policy denies every request not made over TLS (false only for an emulator served over plain HTTP)."
  type        = bool
  default     = true
}

variable "force_destroy" {
  description = "Whether destroy empties the bucket first (only for throw-away environments)."
  type        = bool
  default     = false
}

variable "noncurrent_version_expiration_days" {
  description = "Days after which noncurrent object versions are deleted (null keeps the default)."
  type        = number
  default     = 30
  nullable    = false

  validation {
    condition     = var.noncurrent_version_expiration_days >= 1
    error_message = "noncurrent_version_expiration_days must be at least 1."
  }
}

variable "object_lock_days" {
  description = "Days of S3 Object Lock default retention in governance mode for every new object version, or null for no Object Lock. Only takes effect when the bucket is created: on an existing bucket, a change plans a replacement (see README)."
  type        = number
  default     = null

  validation {
    condition     = var.object_lock_days == null || try(var.object_lock_days >= 1, false)
    error_message = "object_lock_days must be null or at least 1."
  }
}

variable "abort_incomplete_multipart_upload_days" {
  description = "Days after which incomplete multipart uploads are aborted and their parts deleted."
  type        = number
  default     = 1

  validation {
    condition     = var.abort_incomplete_multipart_upload_days >= 1
    error_message = "abort_incomplete_multipart_upload_days must be at least 1."
  }
}

variable "intelligent_tiering" {
  description = "Opt objects under prefix into S3 Intelligent-Tiering's Archive Access (after archive_access_days, 90-730) and/or Deep Archive Access (after deep_archive_access_days, 180-730) tiers; null for none. Only objects stored in the INTELLIGENT_TIERING class are concerned."
  type = object({
    prefix                   = string
    archive_access_days      = optional(number)
    deep_archive_access_days = optional(number)
  })
  default = null
}

variable "transitions" {
  description = "Map of key prefix to a lifecycle transition of current objects: after days, to storage_class (e.g. GLACIER)."
  type = map(object({
    days          = number
    storage_class = string
  }))
  default = {}
}

variable "expiring_prefixes" {
  description = "Map of key prefix to the number of days after which current objects under it expire."
  type        = map(number)
  default     = {}

  validation {
    condition     = alltrue([for prefix, days in var.expiring_prefixes : prefix != "" && days >= 1])
    error_message = "expiring_prefixes keys must be non-empty prefixes and values at least 1 day."
  }
}

variable "cors_rules" {
  description = "CORS rules, for buckets that browsers write to with presigned URLs."
  type = list(object({
    allowed_methods = list(string)
    allowed_origins = list(string)
    allowed_headers = optional(list(string), ["*"])
    expose_headers  = optional(list(string), ["ETag"])
    max_age_seconds = optional(number, 3000)
  }))
  default = []
}

variable "tags" {
  description = "Tags added to the bucket."
  type        = map(string)
  default     = {}
}
