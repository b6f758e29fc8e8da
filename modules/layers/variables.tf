variable "layer_name" {
  description = "Name of the layer."
  type        = string
}

variable "zip_path" {
  description = "Path of the layer zip, built outside Terraform (python/ at its root)."
  type        = string
}

variable "description" {
  description = "Description of the layer."
  type        = string
  default     = ""
}

variable "compatible_runtimes" {
  description = "Lambda runtimes the layer is built for."
  type        = list(string)
  default     = ["python3.12"]
}

variable "architecture" {
  description = "Instruction set the layer's native wheels are built for: x86_64 or arm64."
  type        = string

  validation {
    condition     = contains(["x86_64", "arm64"], var.architecture)
    error_message = "architecture must be x86_64 or arm64."
  }
}
