output "environments" {
  description = "Map of environment name to the names the CLI and the local runner read (docs/contracts.md)."
  value = {
    for name, pipeline in module.pipeline : name => {
      raw_bucket_name       = pipeline.raw_bucket_name
      processed_bucket_name = pipeline.processed_bucket_name
      archive_bucket_name   = pipeline.archive_bucket_name
      work_bucket_name      = pipeline.work_bucket_name
      queue_urls            = pipeline.queue_urls
      bucket_functions      = pipeline.bucket_functions
      dead_letter_queue_url = pipeline.dead_letter_queue_url
      dead_letter_queue_arn = pipeline.dead_letter_queue_arn
      images_table_name     = pipeline.images_table_name
      labels_table_name     = pipeline.labels_table_name
      bundle_topic_arn      = pipeline.bundle_topic_arn
      alerts_topic_arn      = pipeline.alerts_topic_arn
      function_names        = pipeline.function_names
      region                = pipeline.region
      api_url               = pipeline.api_url
      api_id                = pipeline.api_id
      api_function_name     = pipeline.api_function_name
      user_pool_id          = pipeline.user_pool_id
      cli_client_id         = pipeline.cli_client_id
      web_client_id         = pipeline.web_client_id
      auth_domain           = pipeline.auth_domain
      web_url               = pipeline.web_url
      web_bucket_name       = pipeline.web_bucket_name
      web_distribution_id   = pipeline.web_distribution_id
      web_response_headers  = pipeline.web_response_headers
    }
  }
}
