output "bucket_name" {
  description = "Name of the bucket the configuration belongs to."
  value       = aws_s3_bucket_notification.this.bucket
}

output "queue_notification_ids" {
  description = "Ids of the queue notifications in the configuration."
  value       = [for q in var.queues : q.id]
}
