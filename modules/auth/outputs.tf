output "user_pool_id" {
  description = "Id of the user pool."
  value       = aws_cognito_user_pool.this.id
}

output "user_pool_arn" {
  description = "ARN of the user pool."
  value       = aws_cognito_user_pool.this.arn
}

output "issuer" {
  description = "Issuer (iss) of the pool's tokens, for a JWT authorizer."
  value       = "https://cognito-idp.${data.aws_region.current.name}.amazonaws.com/${aws_cognito_user_pool.this.id}"
}

output "web_client_id" {
  description = "Id of the web app's client (authorization code + PKCE)."
  value       = aws_cognito_user_pool_client.web.id
}

output "cli_client_id" {
  description = "Id of the CLI's client (USER_PASSWORD_AUTH, SRP)."
  value       = aws_cognito_user_pool_client.cli.id
}

output "client_ids" {
  description = "Ids of every client: the audiences a JWT authorizer accepts."
  value       = [aws_cognito_user_pool_client.web.id, aws_cognito_user_pool_client.cli.id]
}

output "hosted_ui_domain" {
  description = "Domain of the hosted UI (<prefix>.auth.<region>.amazoncognito.com)."
  value       = "${aws_cognito_user_pool_domain.this.domain}.auth.${data.aws_region.current.name}.amazoncognito.com"
}

output "group_names" {
  description = "Names of the pool's groups."
  value       = sort(keys(aws_cognito_user_group.this))
}
