# State of the local environment, in the moto server itself. The caller (`sluice up`, the
# e2e test) creates the bucket first. Another port:
#   -backend-config='endpoints={s3="http://127.0.0.1:<port>"}'
bucket       = "sluice-local-tfstate"
key          = "sluice/local/terraform.tfstate"
region       = "us-east-1"
encrypt      = true
use_lockfile = true

endpoints = {
  s3 = "http://127.0.0.1:4566"
}
use_path_style              = true
skip_credentials_validation = true
skip_requesting_account_id  = true
skip_metadata_api_check     = true
skip_region_validation      = true
