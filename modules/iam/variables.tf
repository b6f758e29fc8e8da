variable "name_prefix" {
  description = "Prefix of the role names; a role is named <name_prefix>-<function>."
  type        = string
}

variable "functions" {
  description = "The four handlers (transform, archive, tag, bundle): each one's queue and log group ARN."
  type = map(object({
    queue_arn     = string
    log_group_arn = string
  }))

  validation {
    condition     = sort(keys(var.functions)) == sort(["transform", "archive", "tag", "bundle"])
    error_message = "functions must have exactly the keys transform, archive, tag and bundle."
  }
}

variable "api_enabled" {
  description = "Whether the environment has the api function: its execution role and the upload role it hands out exist only then."
  type        = bool
  default     = true
}

variable "api_log_group_arn" {
  description = "ARN of the api function's log group."
  type        = string
}

variable "bucket_arns" {
  description = "ARNs of the environment's buckets."
  type = object({
    raw       = string
    processed = string
    archive   = string
    work      = string
  })
}

variable "key_prefixes" {
  description = "Every key prefix the handlers use, by bucket and name (src/sluice/keys.json, through the pipeline module): each grant names the prefixes its handler reads or writes."
  type = object({
    raw       = object({ uploads = string })
    processed = object({ data = string, errors = string, thumbnails = string, receipts = string, versions = string, leases = string })
    archive   = object({ images = string, data = string, rejected = string, superseded = string })
    work      = object({ requests = string, bundles = string })
  })
}

variable "images_table_arn" {
  description = "ARN of the image metadata table."
  type        = string
}

variable "labels_table_arn" {
  description = "ARN of the labels table."
  type        = string
}

variable "bundle_topic_arn" {
  description = "ARN of the topic the bundle handler publishes to."
  type        = string
}

variable "cold_storage_enabled" {
  description = "Whether archived images may be in archive tiers, so the bundle handler restores them (RestoreObject) and keeps restore markers in WORK."
  type        = bool
  default     = false
}

variable "request_topics_arn_pattern" {
  description = "ARN pattern (ending in *) of the topics the bundle handler creates, one per request that names a recipient, and deletes."
  type        = string

  validation {
    condition     = can(regex("^arn:[^:]+:sns:[^:]+:[0-9]+:[A-Za-z0-9_-]+\\*$", var.request_topics_arn_pattern))
    error_message = "request_topics_arn_pattern must be a topic ARN whose name is a prefix followed by *."
  }
}

variable "rekognition_enabled" {
  description = "Whether the tag handler may call Rekognition (false when it uses the offline labeler)."
  type        = bool
  default     = true
}

variable "kms_key_arn" {
  description = "ARN of the KMS key that encrypts the buckets (SSE-KMS) and queues, or null for SSE-S3 and SSE-SQS."
  type        = string
  default     = null
}

variable "tags" {
  description = "Tags added to the roles."
  type        = map(string)
  default     = {}
}
