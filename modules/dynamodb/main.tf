# An on-demand table with point-in-time recovery and KMS encryption at rest. Every key
# attribute is a string: sluice's tables only key on identifiers.

resource "aws_dynamodb_table" "this" {
  #checkov:skip=CKV_AWS_119:Encrypted with the AWS managed key by default so no key policy has to be run per account; pass kms_key_arn for a customer managed key.
  name                        = var.table_name
  billing_mode                = "PAY_PER_REQUEST"
  hash_key                    = var.hash_key
  range_key                   = var.range_key
  deletion_protection_enabled = var.deletion_protection_enabled
  tags                        = var.tags

  dynamic "attribute" {
    for_each = compact([var.hash_key, var.range_key])

    content {
      name = attribute.value
      type = "S"
    }
  }

  point_in_time_recovery {
    enabled = true
  }

  server_side_encryption {
    enabled     = true
    kms_key_arn = var.kms_key_arn
  }
}
