variable "bucket_name" {
  description = "Name of the bucket whose event notification configuration this module owns."
  type        = string
}

variable "queues" {
  description = "Queue notifications of the bucket: a unique id, the queue ARN, the S3 event types and an optional key prefix and suffix filter."
  type = list(object({
    id            = string
    queue_arn     = string
    events        = list(string)
    filter_prefix = optional(string, "")
    filter_suffix = optional(string, "")
  }))

  validation {
    condition     = length(distinct([for q in var.queues : q.id])) == length(var.queues)
    error_message = "Notification ids on bucket ${var.bucket_name} must be unique."
  }

  validation {
    condition     = alltrue([for q in var.queues : length(q.events) > 0 && alltrue([for e in q.events : startswith(e, "s3:")])])
    error_message = "Every notification on bucket ${var.bucket_name} needs at least one event type of the form s3:<Event>[:<Detail>|*]."
  }
}
