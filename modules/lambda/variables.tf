variable "function_name" {
  description = "Name of the function; its queue and log group are named after it."
  type        = string
}

variable "handler" {
  description = "Entry point of the function, e.g. sluice.handlers.transform.handler."
  type        = string
}

variable "role_description" {
  description = "Description of the function's execution role (named after the function); null says whose role it is."
  type        = string
  default     = null
}

variable "policy_json" {
  description = "IAM policy document (JSON, e.g. an aws_iam_policy_document's json) with what the handler's code may do beyond its own queue, log group and queue key, which the module grants itself; merged into the role's inline policy. Its statement ids must differ from ConsumeOwnQueue, WriteOwnLogs and DecryptOwnQueue. null: the module's statements only."
  type        = string
  default     = null
}

variable "code_zip_path" {
  description = "Path of the function's code zip, built outside Terraform."
  type        = string
}

variable "layer_arns" {
  description = "Layer version ARNs attached to the function."
  type        = list(string)
  default     = []
}

variable "runtime" {
  description = "Lambda runtime identifier."
  type        = string
  default     = "python3.12"
}

variable "architecture" {
  description = "Instruction set of the function: x86_64 or arm64."
  type        = string
  default     = "arm64"

  validation {
    condition     = contains(["x86_64", "arm64"], var.architecture)
    error_message = "architecture must be x86_64 or arm64."
  }
}

variable "memory_size" {
  description = "Memory of the function in MB (CPU scales with it)."
  type        = number
  default     = 256

  validation {
    condition     = var.memory_size >= 128 && var.memory_size <= 10240
    error_message = "memory_size must be between 128 and 10240 MB."
  }
}

variable "timeout" {
  description = "Timeout of one invocation in seconds."
  type        = number
  default     = 60

  validation {
    condition     = var.timeout >= 1 && var.timeout <= 900
    error_message = "timeout must be between 1 and 900 seconds."
  }
}

variable "environment_variables" {
  description = "Environment variables of the function."
  type        = map(string)
  default     = {}
}

variable "log_retention_days" {
  description = "Days the function's logs are kept."
  type        = number
  default     = 30
}

variable "log_kms_key_arn" {
  description = "ARN of a KMS key that encrypts the log group; null uses CloudWatch Logs' own encryption."
  type        = string
  default     = null
}

variable "queue_trigger" {
  description = "Whether the function is fed by its own SQS queue through an event source mapping (false for a function another service invokes, e.g. API Gateway)."
  type        = bool
  default     = true
}

variable "dead_letter_queue_arn" {
  description = "ARN of the queue that messages move to after max_receive_count receives; required with queue_trigger."
  type        = string
  default     = null
}

variable "max_receive_count" {
  description = "Receives of one message before it moves to the dead-letter queue."
  type        = number
  default     = 5

  validation {
    condition     = var.max_receive_count >= 1 && var.max_receive_count <= 1000
    error_message = "max_receive_count must be between 1 and 1000."
  }
}

variable "queue_kms_key_arn" {
  description = "ARN of a customer managed KMS key for the queue (its key policy must let S3 send to it); null uses SSE-SQS."
  type        = string
  default     = null
}

variable "message_retention_seconds" {
  description = "Seconds an unprocessed message stays on the function's queue."
  type        = number
  default     = 345600
}

variable "batch_size" {
  description = "Maximum messages per invocation."
  type        = number
  default     = 10

  validation {
    condition     = var.batch_size >= 1 && var.batch_size <= 10000
    error_message = "batch_size must be between 1 and 10000."
  }
}

variable "maximum_batching_window_in_seconds" {
  description = "Seconds the event source mapping may wait to fill a batch (required >= 1 when batch_size > 10)."
  type        = number
  default     = 0

  validation {
    condition     = var.maximum_batching_window_in_seconds >= 0 && var.maximum_batching_window_in_seconds <= 300
    error_message = "maximum_batching_window_in_seconds must be between 0 and 300."
  }
}

variable "maximum_concurrency" {
  description = "Maximum concurrent invocations the event source mapping drives (2 to 1000)."
  type        = number
  default     = 2

  validation {
    condition     = var.maximum_concurrency >= 2 && var.maximum_concurrency <= 1000
    error_message = "maximum_concurrency must be between 2 and 1000."
  }
}

variable "event_source_mapping_enabled" {
  description = "Whether the event source mapping polls the queue (a local runner serves disabled ones)."
  type        = bool
  default     = true
}

variable "snap_start" {
  description = "Lambda SnapStart: publish a version on every change, restore cold starts from its snapshot, and have the queue invoke the `live` alias. Emulators do not implement it."
  type        = bool
  default     = false
}

variable "tags" {
  description = "Tags added to every resource of the function."
  type        = map(string)
  default     = {}
}
