region = "eu-west-1"

environments = {
  prod = {
    architecture       = "arm64"
    log_retention_days = 365
    log_level          = "INFO"
    labeler            = "rekognition"

    # Bundles: WORK keeps requests/ and bundles/ (and a request's recipient topic lives)
    # this many days; the bundle handler's sweep (confirmed recipients, expired topics,
    # due restore checks) runs every this many minutes.
    bundle_expiration_days = 1
    bundle_sweep_minutes   = 5

    # Cold starts restore a snapshot taken after init (imports, clients, schemas): init
    # alone is 0.3-0.5 s (docs/benchmarks.md, "Cold start").
    snap_start = true

    # Archived originals are read rarely (tagging once, bundles on request).
    archive_storage_class = "STANDARD_IA"

    # An overwritten or deleted original stays recoverable for a year.
    archive_noncurrent_retention_days = 365

    # Buckets, tables and queues under the environment's own KMS key (rotation on).
    kms_cmk_enabled = true

    # Twice the dev budget: 1 GB is about 40 s of the transform at one vCPU (docs/cost.md).
    max_data_bytes = 1073741824

    # The transform at 1,769 MB (one full vCPU): single-threaded, it gets no faster above it,
    # so 2,048 MB cost 16% more for the same duration (docs/cost.md).
    functions = {
      transform = { memory_size = 1769, maximum_concurrency = 50, batch_size = 10, maximum_batching_window_in_seconds = 1 }
      archive   = { maximum_concurrency = 50 }
      tag       = { maximum_concurrency = 5 }
      bundle    = { maximum_concurrency = 5 }
    }

    # Data files by RAW key prefix: a JSON Schema shipped in src/sluice/datasets/ and the
    # fields kept in PROCESSED. root = true: JSON files at the bucket root are this dataset.
    # Adding a dataset: its schema file there and an entry here (modules/pipeline, datasets).
    datasets = {
      retina = {
        prefix     = "retina/"
        schema     = "retina.schema.json"
        projection = ["patient_id", "patient_name"]
        root       = true
      }
    }

    raw_cors_allowed_origins = ["https://sluice.example.com"]
    web_origins              = ["https://sluice.example.com"]
    alert_emails             = ["sluice-alerts@example.com"]
    force_destroy            = false
  }
}
