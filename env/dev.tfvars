region = "eu-west-1"

environments = {
  dev = {
    architecture       = "arm64"
    log_retention_days = 14
    log_level          = "DEBUG"
    labeler            = "rekognition"

    # Cold starts restore a snapshot taken after init (imports, clients, schemas): init
    # alone is 0.3-0.5 s (docs/benchmarks.md, "Cold start").
    snap_start = true

    functions = {
      transform = { maximum_concurrency = 5 }
      archive   = { maximum_concurrency = 5 }
    }

    raw_cors_allowed_origins = ["http://localhost:3000", "https://dev.sluice.example.com"]
    alert_emails             = []

    # Dev data is disposable: destroy may empty buckets and drop tables.
    force_destroy = true
  }
}
