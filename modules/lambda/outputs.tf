output "function_name" {
  description = "Name of the function."
  value       = aws_lambda_function.this.function_name
}

output "function_arn" {
  description = "ARN of the function."
  value       = aws_lambda_function.this.arn
}

output "role_arn" {
  description = "ARN of the function's execution role (its inline policy may still be on its way; the function and its mapping wait for it)."
  value       = aws_iam_role.this.arn
}

output "role_name" {
  description = "Name of the function's execution role (the function's name)."
  value       = aws_iam_role.this.name
}

output "role_policy_json" {
  description = "The role's inline policy: the module's own statements (queue, log group, queue key) merged with policy_json."
  value       = data.aws_iam_policy_document.this.json
}

output "invoked_function_arn" {
  description = "ARN the event source mapping (or API Gateway) invokes: the `live` alias with snap_start, else the function."
  value       = local.invoked_function_arn
}

output "invoke_arn" {
  description = "Invoke ARN (for an API Gateway integration) of what is invoked: the `live` alias with snap_start, else the function."
  value       = var.snap_start ? aws_lambda_alias.live[0].invoke_arn : aws_lambda_function.this.invoke_arn
}

output "invoked_qualifier" {
  description = "Qualifier of what is invoked (`live` with snap_start), null for the function itself; for lambda permissions."
  value       = var.snap_start ? aws_lambda_alias.live[0].name : null
}

output "published_version" {
  description = "Version the `live` alias points at with snap_start; null without it."
  value       = var.snap_start ? aws_lambda_function.this.version : null
}

output "queue_url" {
  description = "URL of the function's queue, available once its redrive policy is set; null without queue_trigger."
  value       = one(aws_sqs_queue.this[*].url)

  # Nothing should send to the queue before failures can be dead-lettered. It also orders
  # the queue policy after the redrive policy: moto's SetQueueAttributes drops a queue's
  # Policy whenever a call does not repeat it (moto 5.2, sqs Queue._set_attributes).
  depends_on = [aws_sqs_queue_redrive_policy.this]
}

output "queue_arn" {
  description = "ARN of the function's queue, available once its redrive policy is set; null without queue_trigger."
  value       = one(aws_sqs_queue.this[*].arn)

  depends_on = [aws_sqs_queue_redrive_policy.this]
}

output "queue_name" {
  description = "Name of the function's queue; null without queue_trigger."
  value       = one(aws_sqs_queue.this[*].name)
}

output "log_group_name" {
  description = "Name of the function's log group."
  value       = aws_cloudwatch_log_group.this.name
}

output "log_group_arn" {
  description = "ARN of the function's log group."
  value       = aws_cloudwatch_log_group.this.arn
}

output "event_source_mapping_uuid" {
  description = "UUID of the event source mapping from the queue to the function; null without queue_trigger."
  value       = one(aws_lambda_event_source_mapping.this[*].uuid)
}
