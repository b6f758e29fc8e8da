output "raw_bucket_name" {
  description = "Name of the RAW bucket (client uploads)."
  value       = module.bucket["raw"].bucket_name
}

output "processed_bucket_name" {
  description = "Name of the PROCESSED bucket (data, errors, thumbnails, receipts)."
  value       = module.bucket["processed"].bucket_name
}

output "archive_bucket_name" {
  description = "Name of the ARCHIVE bucket."
  value       = module.bucket["archive"].bucket_name
}

output "work_bucket_name" {
  description = "Name of the WORK bucket (bundle requests and bundles)."
  value       = module.bucket["work"].bucket_name
}

output "queue_urls" {
  description = "Map of function to the URL of the queue that feeds it."
  value       = { for function, fn in module.function : function => fn.queue_url }
}

output "bucket_functions" {
  description = "Map of bucket name to the function its notifications trigger (local.notifications, the one statement of that wiring): the CLI sends a dead-lettered event back to that function's queue."
  value = {
    for bucket, entries in local.notifications :
    module.bucket[bucket].bucket_name => one(distinct([for entry in entries : entry.function]))
  }
}

output "dead_letter_queue_url" {
  description = "URL of the environment's dead-letter queue."
  value       = aws_sqs_queue.dead_letter.url
}

output "dead_letter_queue_arn" {
  description = "ARN of the environment's dead-letter queue."
  value       = aws_sqs_queue.dead_letter.arn
}

output "images_table_name" {
  description = "Name of the image metadata table."
  value       = module.images_table.table_name
}

output "labels_table_name" {
  description = "Name of the labels table."
  value       = module.labels_table.table_name
}

output "bundle_topic_arn" {
  description = "ARN of the topic that announces finished bundles."
  value       = aws_sns_topic.bundles.arn
}

output "alerts_topic_arn" {
  description = "ARN of the topic that alarms notify."
  value       = aws_sns_topic.alerts.arn
}

output "function_names" {
  description = "Map of function to its Lambda function name."
  value       = { for function, fn in module.function : function => fn.function_name }
}

output "function_role_arns" {
  description = "Map of function to the ARN of its execution role."
  value       = { for function, fn in module.function : function => fn.role_arn }
}

output "region" {
  description = "Region the environment is deployed in."
  value       = local.region
}

output "api_function_name" {
  description = "Name of the api function (invoked by the HTTP API, not by a queue); null without the API."
  value       = one(module.api_function[*].function_name)
}

output "api_role_arn" {
  description = "ARN of the api function's execution role; null without the API."
  value       = one(module.api_function[*].role_arn)
}

output "api_id" {
  description = "Id of the HTTP API; null without the API."
  value       = one(module.api[*].api_id)
}

output "api_url" {
  description = "Base URL of the HTTP API; null without the API."
  value       = one(module.api[*].api_endpoint)
}

output "user_pool_id" {
  description = "Id of the Cognito user pool; null without sign-in."
  value       = one(module.auth[*].user_pool_id)
}

output "cli_client_id" {
  description = "Id of the user pool client `sluice login` uses; null without sign-in."
  value       = one(module.auth[*].cli_client_id)
}

output "web_client_id" {
  description = "Id of the web app's user pool client; null without sign-in."
  value       = one(module.auth[*].web_client_id)
}

output "auth_domain" {
  description = "Domain of the hosted sign-in UI; null without sign-in."
  value       = one(module.auth[*].hosted_ui_domain)
}

output "web_url" {
  description = "URL of the web app (its CloudFront distribution); null without a web app."
  value       = one(module.web[*].url)
}

output "web_bucket_name" {
  description = "Bucket holding the web app and its config.json; null without a web app."
  value       = one(module.web[*].bucket_name)
}

output "web_distribution_id" {
  description = "Id of the web app's CloudFront distribution; null without a web app."
  value       = one(module.web[*].distribution_id)
}

output "web_response_headers" {
  description = "Security headers the web app is served with (CSP, HSTS...); null without a web app."
  value       = one(module.web[*].response_headers)
}
