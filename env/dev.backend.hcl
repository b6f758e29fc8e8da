# State of the dev environment. The state bucket is created once per account, outside this
# configuration (versioned, encrypted, public access blocked); pass another name with
#   terraform init -backend-config=env/dev.backend.hcl -backend-config=bucket=<name>
bucket       = "sluice-tfstate-dev"
key          = "sluice/dev/terraform.tfstate"
region       = "eu-west-1"
encrypt      = true
use_lockfile = true
