output "url" {
  description = "The app's URL (https://<distribution>.cloudfront.net): its origin for CORS and sign-in callbacks."
  value       = "https://${aws_cloudfront_distribution.this.domain_name}"
}

output "bucket_name" {
  description = "Name of the bucket holding the app and its config.json."
  value       = aws_s3_bucket.this.id
}

output "distribution_id" {
  description = "Id of the CloudFront distribution (for invalidations)."
  value       = aws_cloudfront_distribution.this.id
}

output "distribution_arn" {
  description = "ARN of the CloudFront distribution."
  value       = aws_cloudfront_distribution.this.arn
}

output "response_headers" {
  description = "The security headers every response carries (CSP, HSTS...), by name; the local runtime serves the app with them."
  value       = local.response_headers
}

output "app_keys" {
  description = "Keys of the app's files in the bucket, config.json included."
  value       = concat(sort(keys(aws_s3_object.app)), [aws_s3_object.config.key])
}
