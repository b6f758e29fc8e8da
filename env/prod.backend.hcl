# State of the prod environment. The state bucket is created once per account, outside this
# configuration (versioned, encrypted, public access blocked); pass another name with
#   terraform init -backend-config=env/prod.backend.hcl -backend-config=bucket=<name>
bucket       = "sluice-tfstate-prod"
key          = "sluice/prod/terraform.tfstate"
region       = "eu-west-1"
encrypt      = true
use_lockfile = true
