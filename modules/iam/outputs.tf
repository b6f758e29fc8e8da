output "role_arns" {
  description = "Map of function to the ARN of its execution role, available once its policy is attached."
  value       = { for name, role in aws_iam_role.this : name => role.arn }

  # An event source mapping is rejected unless the role can already read the queue.
  depends_on = [aws_iam_role_policy.this]
}

output "role_names" {
  description = "Map of function to the name of its execution role."
  value       = { for name, role in aws_iam_role.this : name => role.name }
}

output "api_role_arn" {
  description = "ARN of the api function's execution role, available once its policy is attached; null without the api."
  value       = one(aws_iam_role.api[*].arn)

  depends_on = [aws_iam_role_policy.api]
}

output "upload_role_arn" {
  description = "ARN of the role the api assumes with a one-key session policy (UPLOAD_ROLE_ARN); null without the api."
  value       = one(aws_iam_role.upload[*].arn)

  depends_on = [aws_iam_role_policy.upload]
}
