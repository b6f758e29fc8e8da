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
  value       = module.iam.role_arns
}

output "region" {
  description = "Region the environment is deployed in."
  value       = local.region
}
