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
