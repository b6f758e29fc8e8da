variable "name" {
  description = "Name of the API; the access log group is /aws/apigateway/<name>."
  type        = string
}

variable "routes" {
  description = "Route keys to serve (METHOD /path), each with whether the JWT authorizer guards it."
  type = map(object({
    authorized = bool
  }))

  validation {
    condition     = alltrue([for key in keys(var.routes) : can(regex("^(GET|POST|PUT|PATCH|DELETE) /", key))])
    error_message = "routes keys must look like GET /path."
  }
}

variable "function_name" {
  description = "Name of the function every route invokes."
  type        = string
}

variable "function_invoke_arn" {
  description = "Invoke ARN of the function (or of its alias) for the Lambda proxy integration."
  type        = string
}

variable "function_qualifier" {
  description = "Alias the integration invokes (for the invoke permission); null for the function itself."
  type        = string
  default     = null
}

variable "jwt_issuer" {
  description = "Issuer URL of the tokens the authorizer accepts (the user pool's)."
  type        = string
}

variable "jwt_audience" {
  description = "Client ids the authorizer accepts as aud (id tokens) or client_id (access tokens)."
  type        = list(string)
}

variable "cors_allowed_origins" {
  description = "Origins of the web app allowed to call the API from a browser; an empty list disables CORS."
  type        = list(string)
  default     = []
}

variable "integration_timeout_milliseconds" {
  description = "Integration timeout in milliseconds (HTTP APIs allow at most 30000)."
  type        = number
  default     = 29000

  validation {
    condition     = var.integration_timeout_milliseconds >= 50 && var.integration_timeout_milliseconds <= 30000
    error_message = "integration_timeout_milliseconds must be between 50 and 30000."
  }
}

variable "throttling_burst_limit" {
  description = "Default route burst limit (requests) of the $default stage."
  type        = number
  default     = 50
}

variable "throttling_rate_limit" {
  description = "Default route steady-state rate limit (requests per second) of the $default stage."
  type        = number
  default     = 25
}

variable "log_retention_days" {
  description = "Days the access logs are kept."
  type        = number
  default     = 30
}

variable "log_kms_key_arn" {
  description = "ARN of a KMS key that encrypts the access log group; null uses CloudWatch Logs' own encryption."
  type        = string
  default     = null
}

variable "tags" {
  description = "Tags added to the API, its stage and its log group."
  type        = map(string)
  default     = {}
}
