# A layer version from a zip built outside Terraform. Layer versions are immutable: a new
# version is published only when the zip's content hash changes, and it is created before
# the old one is deleted so functions never point at a missing version.

resource "aws_lambda_layer_version" "this" {
  layer_name               = var.layer_name
  description              = var.description
  filename                 = var.zip_path
  source_code_hash         = filebase64sha256(var.zip_path)
  compatible_runtimes      = var.compatible_runtimes
  compatible_architectures = [var.architecture]

  lifecycle {
    create_before_destroy = true
  }
}
