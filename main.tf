# sluice: one pipeline per environment. Each environment's state, backend and variables
# live in env/ (see env/README.md); locally the same configuration is applied to an emulator.

module "pipeline" {
  source   = "./modules/pipeline"
  for_each = var.environments

  environment   = each.key
  artifacts_dir = var.artifacts_dir

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
  labeler                       = each.value.labeler
  bundle_url_ttl_seconds        = each.value.bundle_url_ttl_seconds
  raw_cors_allowed_origins      = each.value.raw_cors_allowed_origins
  alert_emails                  = each.value.alert_emails
  kms_key_arn                   = each.value.kms_key_arn
  deny_insecure_transport       = each.value.deny_insecure_transport
  force_destroy                 = each.value.force_destroy

  kms_cmk_enabled                   = each.value.kms_cmk_enabled
  archive_noncurrent_retention_days = each.value.archive_noncurrent_retention_days
  archive_object_lock_days          = each.value.archive_object_lock_days
  datasets                          = each.value.datasets
}
