# sluice: one pipeline per environment. Each environment's state, backend and variables
# live in env/ (see env/README.md); locally the same configuration is applied to an emulator.

locals {
  # The API's routes come from its document (docs/openapi.yaml), the one list of them: a
  # route needs a token unless its operation sets `security: []`.
  openapi = yamldecode(file("${path.module}/docs/openapi.yaml"))
  api_routes = merge([
    for path, item in local.openapi.paths : {
      for method, operation in item : "${upper(method)} ${path}" => {
        authorized = length(try(operation.security, local.openapi.security)) > 0
      } if contains(["get", "put", "post", "delete", "patch"], method)
    }
  ]...)

  # The datasets the web app offers for data files: the pipeline's own registry.
  datasets = sort(keys(jsondecode(file("${path.module}/src/sluice/datasets/datasets.json"))))

  # Every key prefix, by bucket: the handlers' own file (sluice.keys reads it too).
  key_prefixes = jsondecode(file("${path.module}/src/sluice/keys.json"))
}

module "pipeline" {
  source   = "./modules/pipeline"
  for_each = var.environments

  environment   = each.key
  artifacts_dir = var.artifacts_dir
  key_prefixes  = local.key_prefixes

  # null leaves the pipeline module's default in place (its variables are not nullable).
  name_prefix                   = each.value.name_prefix
  architecture                  = each.value.architecture
  log_retention_days            = each.value.log_retention_days
  log_level                     = each.value.log_level
  functions                     = each.value.functions
  event_source_mappings_enabled = each.value.event_source_mappings_enabled
  snap_start                    = each.value.snap_start
  max_receive_count             = each.value.max_receive_count
  thumbnail_sizes               = each.value.thumbnail_sizes
  thumbnail_format              = each.value.thumbnail_format
  max_data_bytes                = each.value.max_data_bytes
  archive_storage_class         = each.value.archive_storage_class
  archive_cold_storage          = each.value.archive_cold_storage
  labeler                       = each.value.labeler
  bundle_url_ttl_seconds        = each.value.bundle_url_ttl_seconds
  bundle_expiration_days        = each.value.bundle_expiration_days
  bundle_sweep_minutes          = each.value.bundle_sweep_minutes
  raw_cors_allowed_origins      = each.value.raw_cors_allowed_origins
  auth_enabled                  = each.value.auth.enabled
  api_enabled                   = each.value.api.enabled
  api_routes                    = local.api_routes
  web_origins                   = each.value.web_origins
  web_app_dir                   = each.value.web.enabled ? "${path.module}/web" : null
  web_datasets                  = local.datasets
  web_sign_in                   = each.value.web_sign_in
  web_security_headers_policy   = each.value.web_security_headers_policy
  web_wait_for_deployment       = each.value.web_wait_for_deployment
  web_multipart_threshold_bytes = each.value.web_multipart_threshold_bytes
  service_endpoint              = var.aws_endpoint_url
  runtime_urls                  = var.runtime_urls
  api_throttling_burst_limit    = each.value.api_throttling_burst_limit
  api_throttling_rate_limit     = each.value.api_throttling_rate_limit
  max_upload_bytes              = each.value.max_upload_bytes
  upload_url_ttl_seconds        = each.value.upload_url_ttl_seconds
  link_ttl_seconds              = each.value.link_ttl_seconds
  seed_user                     = each.value.seed_user
  alert_emails                  = each.value.alert_emails
  kms_key_arn                   = each.value.kms_key_arn
  deny_insecure_transport       = each.value.deny_insecure_transport
  force_destroy                 = each.value.force_destroy

  kms_cmk_enabled                   = each.value.kms_cmk_enabled
  archive_noncurrent_retention_days = each.value.archive_noncurrent_retention_days
  archive_object_lock_days          = each.value.archive_object_lock_days
  datasets                          = each.value.datasets
}
