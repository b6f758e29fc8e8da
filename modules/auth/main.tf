# Sign-in for one environment: a Cognito user pool, the web app's client (authorization
# code + PKCE through the hosted UI), the CLI's client (USER_PASSWORD_AUTH and SRP), the
# hosted-UI domain, the groups the api authorises by, and an optional seeded user.

data "aws_caller_identity" "current" {}

data "aws_region" "current" {}

locals {
  # Hosted-UI domain prefixes are global per region: the account id makes it unique.
  domain_prefix = "${var.name}-${data.aws_caller_identity.current.account_id}"
}

resource "aws_cognito_user_pool" "this" {
  #checkov:skip=CKV_AWS_366:Advanced security (threat protection) is a paid add-on chosen per account; the password policy, lockout and short-lived tokens apply everywhere.
  name                     = var.name
  username_attributes      = ["email"]
  auto_verified_attributes = ["email"]
  deletion_protection      = var.deletion_protection ? "ACTIVE" : "INACTIVE"
  mfa_configuration        = "OFF"
  tags                     = var.tags

  password_policy {
    minimum_length                   = var.password_minimum_length
    require_lowercase                = true
    require_uppercase                = true
    require_numbers                  = true
    require_symbols                  = true
    temporary_password_validity_days = var.temporary_password_validity_days
  }

  # Only administrators create users (the seeded user, `aws cognito-idp admin-create-user`).
  admin_create_user_config {
    allow_admin_create_user_only = true
  }

  account_recovery_setting {
    recovery_mechanism {
      name     = "verified_email"
      priority = 1
    }
  }

  schema {
    name                = "email"
    attribute_data_type = "String"
    mutable             = true
    required            = true

    string_attribute_constraints {
      min_length = 3
      max_length = 254
    }
  }
}

resource "aws_cognito_user_pool_domain" "this" {
  domain       = local.domain_prefix
  user_pool_id = aws_cognito_user_pool.this.id
}

# The web app: a public client (no secret; a browser cannot keep one), the authorization
# code flow with PKCE through the hosted UI, refresh tokens. No password flow at all.
resource "aws_cognito_user_pool_client" "web" {
  name                                 = "${var.name}-web"
  user_pool_id                         = aws_cognito_user_pool.this.id
  generate_secret                      = false
  allowed_oauth_flows_user_pool_client = true
  allowed_oauth_flows                  = ["code"]
  allowed_oauth_scopes                 = ["openid", "email", "profile"]
  supported_identity_providers         = ["COGNITO"]
  callback_urls                        = var.callback_urls
  logout_urls                          = var.logout_urls
  explicit_auth_flows                  = ["ALLOW_REFRESH_TOKEN_AUTH"]
  prevent_user_existence_errors        = "ENABLED"
  enable_token_revocation              = true
  access_token_validity                = var.access_token_minutes
  id_token_validity                    = var.access_token_minutes
  refresh_token_validity               = var.refresh_token_days

  token_validity_units {
    access_token  = "minutes"
    id_token      = "minutes"
    refresh_token = "days"
  }
}

# The CLI and the tests: `sluice login` sends the password to Cognito over TLS
# (USER_PASSWORD_AUTH, also what moto implements); SRP stays allowed for SDK clients that
# prefer never sending it. A separate client keeps the web client free of password flows.
resource "aws_cognito_user_pool_client" "cli" {
  name                          = "${var.name}-cli"
  user_pool_id                  = aws_cognito_user_pool.this.id
  generate_secret               = false
  explicit_auth_flows           = concat(var.cli_password_auth ? ["ALLOW_USER_PASSWORD_AUTH"] : [], ["ALLOW_USER_SRP_AUTH", "ALLOW_REFRESH_TOKEN_AUTH"])
  prevent_user_existence_errors = "ENABLED"
  enable_token_revocation       = true
  access_token_validity         = var.access_token_minutes
  id_token_validity             = var.access_token_minutes
  refresh_token_validity        = var.refresh_token_days

  token_validity_units {
    access_token  = "minutes"
    id_token      = "minutes"
    refresh_token = "days"
  }
}

resource "aws_cognito_user_group" "this" {
  for_each = var.groups

  name         = each.key
  description  = each.value
  user_pool_id = aws_cognito_user_pool.this.id
}

resource "aws_cognito_user" "seed" {
  count = var.seed_user == null ? 0 : 1

  user_pool_id       = aws_cognito_user_pool.this.id
  username           = var.seed_user.email
  temporary_password = var.seed_user_temporary_password
  message_action     = "SUPPRESS"

  attributes = {
    email          = var.seed_user.email
    email_verified = "true"
  }

  lifecycle {
    # The user sets a new password at first sign-in (NEW_PASSWORD_REQUIRED).
    ignore_changes = [temporary_password]

    precondition {
      condition     = var.seed_user_temporary_password != null
      error_message = "seed_user needs seed_user_temporary_password."
    }
  }
}

resource "aws_cognito_user_in_group" "seed" {
  for_each = var.seed_user == null ? toset([]) : toset(var.seed_user.groups)

  user_pool_id = aws_cognito_user_pool.this.id
  group_name   = aws_cognito_user_group.this[each.value].name
  username     = aws_cognito_user.seed[0].username
}
