variable "region" {
  description = "AWS region every environment of this state is deployed in."
  type        = string
}

variable "aws_endpoint_url" {
  description = "URL of an AWS emulator that serves every service (e.g. http://127.0.0.1:4566); null for AWS."
  type        = string
  default     = null

  validation {
    condition     = var.aws_endpoint_url == null || can(regex("^https?://", var.aws_endpoint_url))
    error_message = "aws_endpoint_url must be an http:// or https:// URL, or null."
  }
}

variable "runtime_urls" {
  description = "Where a local runtime serves the HTTP API and the web app instead of API Gateway and CloudFront; `sluice up` sets it from its ports. null in AWS."
  type = object({
    api = string
    web = string
  })
  default = null
}

variable "artifacts_dir" {
  description = "Directory with sluice-code.zip and sluice-layer-<architecture>.zip, relative to the working directory or absolute."
  type        = string
  default     = "build"
}

variable "tags" {
  description = "Tags added to every resource, beside Project and ManagedBy."
  type        = map(string)
  default     = {}
}

variable "environments" {
  description = "Environments deployed by this state, by name; an unset attribute takes the pipeline module's default (modules/pipeline/variables.tf describes each, e.g. datasets). api, auth and web switch the HTTP API (with its api function), the Cognito sign-in and the web app on or off (on unless set: off only where the emulator lacks the service, docs/localstack.md); the API needs sign-in and the web app needs the API. bundle_expiration_days (whole days, 1-3650) is how long WORK keeps requests/ and bundles/ and a request's notification topic lives; bundle_sweep_minutes (whole minutes, 1-60) is how often the bundle handler's scheduled sweep runs (docs/decisions.md, 34)."
  type = map(object({
    name_prefix        = optional(string)
    architecture       = optional(string)
    log_retention_days = optional(number)
    log_level          = optional(string)
    functions = optional(map(object({
      memory_size                        = optional(number)
      timeout                            = optional(number)
      batch_size                         = optional(number)
      maximum_batching_window_in_seconds = optional(number)
      maximum_concurrency                = optional(number)
    })))
    event_source_mappings_enabled = optional(bool)
    snap_start                    = optional(bool)
    max_receive_count             = optional(number)
    thumbnail_sizes               = optional(list(number))
    thumbnail_format              = optional(string)
    max_data_bytes                = optional(number)
    archive_storage_class         = optional(string)
    archive_cold_storage = optional(object({
      mode                     = string
      archive_access_days      = optional(number)
      deep_archive_access_days = optional(number)
      glacier_after_days       = optional(number)
      restore_tier             = optional(string)
      restore_days             = optional(number)
    }))
    labeler                       = optional(string)
    bundle_url_ttl_seconds        = optional(number)
    bundle_expiration_days        = optional(number)
    bundle_sweep_minutes          = optional(number)
    raw_cors_allowed_origins      = optional(list(string))
    web_origins                   = optional(list(string))
    web_sign_in                   = optional(string)
    web_security_headers_policy   = optional(bool)
    web_wait_for_deployment       = optional(bool)
    web_multipart_threshold_bytes = optional(number)
    api_throttling_burst_limit    = optional(number)
    api_throttling_rate_limit     = optional(number)
    max_upload_bytes              = optional(number)
    upload_url_ttl_seconds        = optional(number)
    link_ttl_seconds              = optional(number)
    seed_user = optional(object({
      email              = string
      temporary_password = string
      groups             = list(string)
    }))
    api                     = optional(object({ enabled = optional(bool, true) }), {})
    auth                    = optional(object({ enabled = optional(bool, true) }), {})
    web                     = optional(object({ enabled = optional(bool, true) }), {})
    alert_emails            = optional(list(string))
    kms_key_arn             = optional(string)
    deny_insecure_transport = optional(bool)
    force_destroy           = optional(bool)

    kms_cmk_enabled                   = optional(bool)
    archive_noncurrent_retention_days = optional(number)
    archive_object_lock_days          = optional(number)
    datasets = optional(map(object({
      prefix     = string
      schema     = string
      projection = list(string)
      root       = optional(bool, false)
    })))
  }))

  validation {
    condition     = length(var.environments) > 0
    error_message = "environments must define at least one environment."
  }

  validation {
    condition = alltrue([
      for env in values(var.environments) : (env.auth.enabled || !env.api.enabled) && (env.api.enabled || !env.web.enabled)
    ])
    error_message = "An environment's HTTP API needs its sign-in (auth.enabled), and its web app needs the API (api.enabled)."
  }

  validation {
    condition = alltrue([
      for env in values(var.environments) : env.bundle_expiration_days == null ? true : env.bundle_expiration_days >= 1 && env.bundle_expiration_days <= 3650 && floor(env.bundle_expiration_days) == env.bundle_expiration_days
    ])
    error_message = "bundle_expiration_days must be a whole number of days between 1 and 3650."
  }

  validation {
    condition = alltrue([
      for env in values(var.environments) : env.bundle_sweep_minutes == null ? true : env.bundle_sweep_minutes >= 1 && env.bundle_sweep_minutes <= 60 && floor(env.bundle_sweep_minutes) == env.bundle_sweep_minutes
    ])
    error_message = "bundle_sweep_minutes must be a whole number between 1 and 60."
  }

  validation {
    # Bucket names are <prefix>-<env>-<bucket>-<account id>-<region>, at most 63 characters.
    condition = alltrue([
      for name, env in var.environments : length("${coalesce(env.name_prefix, "sluice")}-${name}") <= 24
    ])
    error_message = "<name_prefix>-<environment> must be at most 24 characters so bucket names stay within 63."
  }
}
