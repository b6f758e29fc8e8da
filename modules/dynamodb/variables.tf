variable "table_name" {
  description = "Name of the table."
  type        = string
}

variable "hash_key" {
  description = "Name of the partition key attribute (type S)."
  type        = string
}

variable "range_key" {
  description = "Name of the sort key attribute (type S), or null for a table without one."
  type        = string
  default     = null
}

variable "kms_key_arn" {
  description = "ARN of a customer managed KMS key; null uses the AWS managed key aws/dynamodb."
  type        = string
  default     = null
}

variable "deletion_protection_enabled" {
  description = "Whether the table is protected against deletion."
  type        = bool
  default     = true
}

variable "tags" {
  description = "Tags added to the table."
  type        = map(string)
  default     = {}
}
