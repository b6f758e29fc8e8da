variable "name" {
  description = "Name of the user pool; the clients are <name>-web and <name>-cli, the hosted-UI domain <name>-<account id>."
  type        = string
}

variable "callback_urls" {
  description = "URLs the hosted UI may redirect to with an authorization code (the web app's origins)."
  type        = list(string)
  default     = []
}

variable "logout_urls" {
  description = "URLs the hosted UI may redirect to after sign-out."
  type        = list(string)
  default     = []
}

variable "groups" {
  description = "Groups of the pool, by name, with their description; the api authorises by them."
  type        = map(string)
  default = {
    admin  = "May delete images, besides everything a member may do."
    member = "May upload, browse images and labels, request bundles and read receipts."
  }
}

variable "password_minimum_length" {
  description = "Minimum password length; lower, upper case, digits and symbols are always required."
  type        = number
  default     = 12

  validation {
    condition     = var.password_minimum_length >= 12 && var.password_minimum_length <= 99
    error_message = "password_minimum_length must be between 12 and 99."
  }
}

variable "temporary_password_validity_days" {
  description = "Days an administrator-set temporary password stays valid."
  type        = number
  default     = 3
}

variable "access_token_minutes" {
  description = "Lifetime of access and id tokens in minutes (5-1440)."
  type        = number
  default     = 60

  validation {
    condition     = var.access_token_minutes >= 5 && var.access_token_minutes <= 1440
    error_message = "access_token_minutes must be between 5 and 1440."
  }
}

variable "refresh_token_days" {
  description = "Lifetime of refresh tokens in days."
  type        = number
  default     = 30
}

variable "cli_password_auth" {
  description = "Whether the CLI client allows USER_PASSWORD_AUTH (what `sluice login` uses); SRP is always allowed."
  type        = bool
  default     = true
}

variable "seed_user" {
  description = "A user created with seed_user_temporary_password (changed at first sign-in) and added to groups; null for none."
  type = object({
    email  = string
    groups = list(string)
  })
  default = null
}

variable "seed_user_temporary_password" {
  description = "Temporary password of seed_user; it must satisfy the password policy."
  type        = string
  default     = null
  sensitive   = true
}

variable "deletion_protection" {
  description = "Whether the user pool refuses deletion."
  type        = bool
  default     = true
}

variable "tags" {
  description = "Tags added to the user pool."
  type        = map(string)
  default     = {}
}
