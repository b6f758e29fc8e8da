locals {
  # An emulator (moto, LocalStack) answers every service on one URL.
  emulated = var.aws_endpoint_url != null
}

provider "aws" {
  region = var.region

  # Without aws_endpoint_url the provider still honours AWS_ENDPOINT_URL and
  # AWS_ENDPOINT_URL_<SERVICE> from the environment, like every AWS SDK.
  dynamic "endpoints" {
    for_each = local.emulated ? [var.aws_endpoint_url] : []

    content {
      apigatewayv2   = endpoints.value
      cloudfront     = endpoints.value
      cloudwatch     = endpoints.value
      cloudwatchlogs = endpoints.value
      cognitoidp     = endpoints.value
      dynamodb       = endpoints.value
      events         = endpoints.value
      iam            = endpoints.value
      kms            = endpoints.value
      lambda         = endpoints.value
      s3             = endpoints.value
      sns            = endpoints.value
      sqs            = endpoints.value
      sts            = endpoints.value
    }
  }

  # Emulators serve buckets by path, accept any credentials and have no metadata service.
  s3_use_path_style           = local.emulated
  skip_credentials_validation = local.emulated
  skip_metadata_api_check     = local.emulated
  skip_region_validation      = local.emulated

  default_tags {
    tags = merge({ Project = "sluice", ManagedBy = "terraform" }, var.tags)
  }
}
