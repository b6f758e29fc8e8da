#!/usr/bin/env bash
# Write a Terraform CLI configuration that installs hashicorp/* providers from a local
# filesystem mirror when this machine has one, and from the registry otherwise.
#
#   scripts/terraformrc.sh [CONFIG_PATH]
#
# CONFIG_PATH defaults to .sluice/terraformrc in the repository (never ~/.terraformrc, which
# may be someone's own configuration). The mirror is $SLUICE_TF_MIRROR when set, else the
# first directory of $SLUICE_TF_MIRROR_CANDIDATES (colon-separated; default: the usual
# locations) that holds registry.terraform.io/hashicorp/. The script prints the line to
# export so terraform picks the file up.
set -euo pipefail

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
config_path="${1:-${repo_root}/.sluice/terraformrc}"

default_candidates=/opt/tf-plugins:/usr/share/terraform/plugins:/usr/local/share/terraform/plugins

find_mirror() {
  local candidate candidates
  if [[ -n "${SLUICE_TF_MIRROR:-}" ]]; then
    if [[ ! -d "${SLUICE_TF_MIRROR}/registry.terraform.io/hashicorp" ]]; then
      echo "SLUICE_TF_MIRROR=${SLUICE_TF_MIRROR} has no registry.terraform.io/hashicorp/ inside" >&2
      return 1
    fi
    printf '%s\n' "${SLUICE_TF_MIRROR}"
    return 0
  fi
  IFS=: read -r -a candidates <<<"${SLUICE_TF_MIRROR_CANDIDATES:-${default_candidates}}"
  for candidate in "${candidates[@]}"; do
    if [[ -d "${candidate}/registry.terraform.io/hashicorp" ]]; then
      printf '%s\n' "${candidate}"
      return 0
    fi
  done
  return 0
}

mirror="$(find_mirror)"
mkdir -p "$(dirname "${config_path}")"
tmp="$(mktemp "${config_path}.XXXXXX")"
trap 'rm -f "${tmp}"' EXIT

if [[ -n "${mirror}" ]]; then
  cat >"${tmp}" <<HCL
# Written by scripts/terraformrc.sh: hashicorp/* providers come from the local mirror.
provider_installation {
  filesystem_mirror {
    path    = "${mirror}"
    include = ["registry.terraform.io/hashicorp/*"]
  }
  direct {
    exclude = ["registry.terraform.io/hashicorp/*"]
  }
}
HCL
  echo "provider mirror: ${mirror}" >&2
else
  cat >"${tmp}" <<HCL
# Written by scripts/terraformrc.sh: no local mirror found, providers come from the registry.
provider_installation {
  direct {}
}
HCL
  echo "no provider mirror found: using the registry" >&2
fi

mv "${tmp}" "${config_path}"
trap - EXIT
printf 'export TF_CLI_CONFIG_FILE=%q\n' "${config_path}"
