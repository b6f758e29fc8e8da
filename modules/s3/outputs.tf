output "bucket_name" {
  description = "Name of the bucket."
  value       = aws_s3_bucket.this.bucket
}

output "bucket_arn" {
  description = "ARN of the bucket."
  value       = aws_s3_bucket.this.arn
}

output "bucket_id" {
  description = "ID of the bucket, available once its access, encryption and policy settings are in place."
  value       = aws_s3_bucket.this.id

  # Consumers (notifications, functions) must not see the bucket before it is locked down.
  depends_on = [
    aws_s3_bucket_public_access_block.this,
    aws_s3_bucket_server_side_encryption_configuration.this,
    aws_s3_bucket_policy.this,
  ]
}
