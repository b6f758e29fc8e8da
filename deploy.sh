#!/usr/bin/env bash
# Deploy sluice: the local stack on this machine, or an AWS environment with Terraform.
# Run ./deploy.sh --help for usage; docs/deploy.md explains the flow and the CI side.
set -euo pipefail

readonly EXIT_USAGE=2 EXIT_PREREQ=3 EXIT_REFUSED=4
readonly MIN_TERRAFORM=1.10.0

root=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
cd "$root"

usage() {
  cat <<'EOF'
Usage:
  ./deploy.sh local [SLUICE_UP_ARGS...]
  ./deploy.sh dev|prod [plan|apply|destroy] [OPTIONS] [-- TERRAFORM_PLAN_ARGS...]
  ./deploy.sh dev|prod apply-plan [OPTIONS]

  local     bootstrap .venv, then run the whole pipeline on this machine (`sluice up`).
  dev|prod  build the artifacts, `terraform init` with env/<env>.backend.hcl, then plan
            (the default), apply or destroy with env/<env>.tfvars. apply and destroy show
            the saved plan and ask before changing anything.
  apply-plan  apply build/<env>.tfplan, a plan saved earlier (by another job, reviewed),
            exactly as it is: no build, no new plan. The artifacts in build/ must match
            build/SHA256SUMS, the checksums written when they were built.

Options:
  --auto-approve        apply or destroy the plan without asking (CI)
  --allow-prod-destroy  required, with destroy, to destroy prod
  --prebuilt            plan with the artifacts already in build/ (checked against
                        build/SHA256SUMS) instead of building them: promote what another
                        environment ran, byte for byte
  --dry-run             check prerequisites, then print the commands instead of running
                        them (same as SLUICE_DRY_RUN=1)
  -h, --help            show this help

Environment: SLUICE_DRY_RUN=1 (as --dry-run), SLUICE_PYTHON (the Python that builds the
artifacts; default .venv/bin/python), TF_CLI_CONFIG_FILE (default .sluice/terraformrc).

Prerequisites, each checked with its own message: Terraform >= 1.10, the AWS CLI or
Python with boto3, valid AWS credentials, a region (env/<env>.tfvars, AWS_REGION or
AWS_DEFAULT_REGION). The plan is saved in build/<env>.tfplan, readable in build/<env>.plan.txt.

Exit status: 0 done (or nothing to change), 1 a step failed, 2 usage error,
3 a prerequisite is missing, 4 refused (not confirmed, no terminal to ask on, prod destroy).
EOF
}

say() { printf 'deploy: %s\n' "$*" >&2; }
die() {
  local status=$1
  shift
  printf 'deploy: error: %s\n' "$*" >&2
  exit "$status"
}

dry_run=${SLUICE_DRY_RUN:-0}
[[ $dry_run == 1 || $dry_run == true ]] && dry_run=1 || dry_run=0

# Run a command, or only show it in a dry run.
run() {
  if ((dry_run)); then
    printf '+'
    printf ' %q' "$@"
    printf '\n'
  else
    "$@"
  fi
}

use_terraform_cli_config() {
  # The machine's provider mirror (scripts/bootstrap.sh writes this), unless the caller chose.
  if [[ -z ${TF_CLI_CONFIG_FILE:-} && -f $root/.sluice/terraformrc ]]; then
    export TF_CLI_CONFIG_FILE=$root/.sluice/terraformrc
  fi
}

deploy_local() {
  run "$root/scripts/bootstrap.sh"
  use_terraform_cli_config
  if ((dry_run)); then
    run "$root/.venv/bin/sluice" up "$@"
    exit 0
  fi
  exec "$root/.venv/bin/sluice" up "$@"
}

# --- arguments ------------------------------------------------------------------------

[[ $# -gt 0 ]] || {
  usage >&2
  exit "$EXIT_USAGE"
}
case $1 in
  -h | --help)
    usage
    exit 0
    ;;
esac

env=$1
shift
case $env in
  local)
    for arg in "$@"; do
      case $arg in
        -h | --help)
          usage
          exit 0
          ;;
        --dry-run) dry_run=1 ;;
      esac
    done
    args=()
    for arg in "$@"; do [[ $arg == --dry-run ]] || args+=("$arg"); done
    deploy_local "${args[@]+"${args[@]}"}"
    ;;
  dev | prod) ;;
  *) die "$EXIT_USAGE" "unknown environment '$env': expected local, dev or prod (see --help)" ;;
esac

action=plan
auto_approve=0
allow_prod_destroy=0
prebuilt=0
extra_plan_args=()
action_set=0
while [[ $# -gt 0 ]]; do
  case $1 in
    plan | apply | destroy | apply-plan)
      ((action_set == 0)) || die "$EXIT_USAGE" "more than one action: '$action' and '$1'"
      action=$1
      action_set=1
      ;;
    --auto-approve) auto_approve=1 ;;
    --allow-prod-destroy) allow_prod_destroy=1 ;;
    --prebuilt) prebuilt=1 ;;
    --dry-run) dry_run=1 ;;
    -h | --help)
      usage
      exit 0
      ;;
    --)
      shift
      extra_plan_args=("$@")
      break
      ;;
    *) die "$EXIT_USAGE" "unknown argument '$1' (see --help)" ;;
  esac
  shift
done

tfvars=env/$env.tfvars
backend=env/$env.backend.hcl
plan_file=build/$env.tfplan
plan_text=build/$env.plan.txt
checksums=build/SHA256SUMS

# Refusals first: they need no tools and must not wait for a build.
if [[ $action == destroy && $env == prod && $allow_prod_destroy != 1 ]]; then
  die "$EXIT_REFUSED" "refusing to destroy prod without --allow-prod-destroy"
fi
if [[ $action == apply-plan && ${#extra_plan_args[@]} -gt 0 ]]; then
  die "$EXIT_USAGE" "apply-plan applies a saved plan: it takes no Terraform plan arguments"
fi
if [[ $action != plan && $auto_approve != 1 && $dry_run != 1 && ! -t 0 ]]; then
  die "$EXIT_REFUSED" "'$action' asks for confirmation but stdin is not a terminal;" \
    "pass --auto-approve to $action without asking"
fi

# --- prerequisites --------------------------------------------------------------------

version_at_least() { # version_at_least HAVE WANT
  [[ "$(printf '%s\n%s\n' "$2" "$1" | sort -V | head -n 1)" == "$2" ]]
}

tfvars_string() { # the value of a top-level `name = "value"` line in the tfvars file
  sed -n -E "s/^[[:space:]]*$1[[:space:]]*=[[:space:]]*\"([^\"]*)\".*/\\1/p" "$tfvars" | head -n 1
}

check_prerequisites() {
  [[ -f $tfvars ]] || die "$EXIT_PREREQ" "$tfvars not found: the variables of '$env'"
  [[ -f $backend ]] || die "$EXIT_PREREQ" "$backend not found: the state backend of '$env'"

  command -v terraform >/dev/null 2>&1 ||
    die "$EXIT_PREREQ" "terraform not found on PATH: install Terraform >= $MIN_TERRAFORM" \
      "(https://developer.hashicorp.com/terraform/install)"
  local tf_version
  tf_version=$(terraform version -json 2>/dev/null |
    sed -n -E 's/.*"terraform_version"[[:space:]]*:[[:space:]]*"([0-9][0-9.]*)".*/\1/p')
  [[ -n $tf_version ]] || die "$EXIT_PREREQ" "could not read the Terraform version" \
    "('terraform version -json' failed)"
  version_at_least "$tf_version" "$MIN_TERRAFORM" ||
    die "$EXIT_PREREQ" "Terraform $tf_version is too old: sluice needs >= $MIN_TERRAFORM" \
      "(S3 state locking with use_lockfile)"
  say "terraform $tf_version"

  python=${SLUICE_PYTHON:-$root/.venv/bin/python}
  [[ -x $python ]] || python=$(command -v python3 || true)
  [[ -n $python ]] || die "$EXIT_PREREQ" "python3 not found: it builds the Lambda artifacts" \
    "(run ./scripts/bootstrap.sh)"

  region=$(tfvars_string region)
  local region_source=$tfvars
  if [[ -z $region ]]; then
    region=${AWS_REGION:-${AWS_DEFAULT_REGION:-}}
    region_source="AWS_REGION/AWS_DEFAULT_REGION"
  fi
  [[ -n $region ]] || die "$EXIT_PREREQ" "no AWS region: set region in $tfvars" \
    "or export AWS_REGION"
  say "region $region ($region_source)"

  local identity status=0
  if command -v aws >/dev/null 2>&1; then
    identity=$(aws sts get-caller-identity --region "$region" --output text \
      --query '[Account,Arn]' 2>&1) || status=$?
  elif "$python" -c 'import boto3' >/dev/null 2>&1; then
    identity=$("$python" - "$region" 2>&1 <<'PY'
import sys

import boto3

me = boto3.client("sts", region_name=sys.argv[1]).get_caller_identity()
print(me["Account"], me["Arn"])
PY
    ) || status=$?
  else
    die "$EXIT_PREREQ" "neither the AWS CLI nor Python's boto3 is available to check" \
      "credentials: install awscli, or run ./scripts/bootstrap.sh"
  fi
  if ((status != 0)); then
    die "$EXIT_PREREQ" "no valid AWS credentials for $env (sts get-caller-identity failed):" \
      "${identity##*$'\n'} -- configure them (aws configure sso, AWS_PROFILE, or OIDC in CI)"
  fi
  say "deploying $env as: ${identity//$'\t'/ }"
}

confirm() { # confirm PROMPT EXPECTED
  if ((auto_approve)); then
    return 0
  fi
  if ((dry_run)); then
    say "(dry run: would ask \"$1\")"
    return 0
  fi
  local answer
  read -r -p "$1 " answer || true
  [[ $answer == "$2" ]] || die "$EXIT_REFUSED" "$action of $env cancelled"
}

architectures() { # the layer architectures the environment uses; both when not stated
  local found
  found=$(sed -n -E 's/^[[:space:]]*architecture[[:space:]]*=[[:space:]]*"([a-z0-9_]+)".*/\1/p' \
    "$tfvars" | sort -u)
  printf '%s\n' "${found:-arm64
x86_64}"
}

# --- the deployment -------------------------------------------------------------------

check_prerequisites
use_terraform_cli_config

# The artifacts: built here (and their checksums written), or the ones already in build/,
# checked against the checksums written when they were built (promotion, saved plans).
write_checksums() {
  if ((dry_run)); then
    printf '+ sha256sum build/*.zip > %q\n' "$checksums"
    return
  fi
  (cd build && sha256sum -- *.zip) >"$checksums.tmp" && mv "$checksums.tmp" "$checksums"
}
verify_checksums() {
  [[ -f $checksums || $dry_run == 1 ]] ||
    die "$EXIT_PREREQ" "$checksums not found: the artifacts in build/ have no checksums"
  run sh -c 'cd build && sha256sum --check --strict --quiet SHA256SUMS' ||
    die 1 "the artifacts in build/ differ from $checksums: refusing to deploy them"
  say "artifacts match $checksums"
}
if [[ $action == apply-plan || $prebuilt == 1 ]]; then
  verify_checksums
else
  build_args=()
  while IFS= read -r arch; do build_args+=(--arch "$arch"); done < <(architectures)
  run "$python" scripts/build_artifacts.py --out build "${build_args[@]}"
  write_checksums
fi

run terraform init -reconfigure -input=false "-backend-config=$backend" || {
  status=$?
  # .terraform.lock.hcl pins the provider by hash; a platform whose hash it lacks fails here.
  echo "deploy.sh: terraform init failed. If it says the provider does not match a checksum" \
    "in .terraform.lock.hcl, add your platform's hashes (docs/deploy.md, 'Provider lock'):" \
    "terraform providers lock -platform=linux_amd64 -platform=linux_arm64" \
    "-platform=darwin_amd64 -platform=darwin_arm64" >&2
  exit "$status"
}

confirm_action() {
  if [[ $env == prod ]]; then
    confirm "$action prod with this plan? Type 'prod' to continue:" prod
  else
    confirm "$action $env with this plan? Type 'yes' to continue:" yes
  fi
}

if [[ $action == apply-plan ]]; then
  [[ -f $plan_file || $dry_run == 1 ]] ||
    die "$EXIT_PREREQ" "$plan_file not found: apply-plan applies a plan saved by 'plan'"
  # What is about to change, once more in this job's log; Terraform itself refuses a plan
  # whose state has moved on since it was made ("Saved plan is stale").
  run terraform show -no-color "$plan_file"
  confirm_action
  run terraform apply -input=false "$plan_file"
  say "apply of the saved plan for $env done"
  exit 0
fi

plan_args=(-input=false -detailed-exitcode "-var-file=$tfvars" "-out=$plan_file")
[[ $action == destroy ]] && plan_args=(-destroy "${plan_args[@]}")
plan_status=0
run terraform plan "${plan_args[@]}" "${extra_plan_args[@]+"${extra_plan_args[@]}"}" ||
  plan_status=$?
# -detailed-exitcode: 0 no changes, 2 changes, anything else failed.
[[ $plan_status == 0 || $plan_status == 2 ]] ||
  die 1 "terraform plan failed for $env (exit $plan_status)"
if ((dry_run)); then
  printf '+ terraform show -no-color %q > %q\n' "$plan_file" "$plan_text"
else
  terraform show -no-color "$plan_file" >"$plan_text"
fi
say "plan saved: $plan_file (text: $plan_text)"

if [[ $plan_status == 0 && $dry_run != 1 ]]; then
  say "no changes in $env"
  exit 0
fi
[[ $action == plan ]] && exit 0

confirm_action
run terraform apply -input=false "$plan_file"
say "$action of $env done"
