terraform {
  # 1.10: S3 backend locking with a lock file (use_lockfile).
  required_version = ">= 1.10"

  required_providers {
    aws = {
      source  = "hashicorp/aws"
      version = ">= 5.80, < 6.0"
    }
  }

  # Partial configuration: each environment passes its own env/<env>.backend.hcl to
  # `terraform init -backend-config=...`, so each has its own state and lock.
  backend "s3" {}
}
