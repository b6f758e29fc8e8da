output "layer_version_arn" {
  description = "ARN of the layer version (with its version number), for a function's layers."
  value       = aws_lambda_layer_version.this.arn
}

output "layer_version" {
  description = "Version number of the layer."
  value       = aws_lambda_layer_version.this.version
}
