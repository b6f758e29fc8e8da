variable "name" {
  description = "Name of the app's resources: the bucket is <name>-<account id>-<region>, the distribution's comment and policies <name>."
  type        = string
}

variable "app_dir" {
  description = "Directory holding the static app (index.html, styles.css, js/); every file is uploaded."
  type        = string
}

variable "app_config" {
  description = "The app's configuration, written as config.json next to it (API URL, user pool, client, sign-in mode...)."
  type        = any
}

variable "connect_sources" {
  description = "Origins the app may call besides its own (the API, the user pool's endpoints, the RAW bucket for uploads): the CSP's connect-src."
  type        = list(string)
  default     = []
  nullable    = false
}

variable "image_sources" {
  description = "Origins the app may show images from besides its own (the PROCESSED bucket's presigned thumbnails): the CSP's img-src."
  type        = list(string)
  default     = []
  nullable    = false
}

variable "security_headers_policy" {
  description = "Whether CloudFront sends the security headers through a response headers policy (false only where the emulator lacks that API; the headers stay in the output response_headers)."
  type        = bool
  default     = true
  nullable    = false
}

variable "wait_for_deployment" {
  description = "Whether apply waits until the distribution is deployed to every edge location."
  type        = bool
  default     = true
  nullable    = false
}

variable "price_class" {
  description = "CloudFront price class (PriceClass_100, PriceClass_200 or PriceClass_All)."
  type        = string
  default     = "PriceClass_100"

  validation {
    condition     = contains(["PriceClass_100", "PriceClass_200", "PriceClass_All"], var.price_class)
    error_message = "price_class must be PriceClass_100, PriceClass_200 or PriceClass_All."
  }
}

variable "hsts_max_age_seconds" {
  description = "Strict-Transport-Security max-age."
  type        = number
  default     = 63072000
}

variable "deny_insecure_transport" {
  description = "Whether the bucket policy denies every request not made over TLS (false only for an emulator served over plain HTTP)."
  type        = bool
  default     = true
  nullable    = false
}

variable "force_destroy" {
  description = "Whether destroy may delete a bucket that still holds objects."
  type        = bool
  default     = false
  nullable    = false
}

variable "tags" {
  description = "Tags added to every resource."
  type        = map(string)
  default     = {}
}
