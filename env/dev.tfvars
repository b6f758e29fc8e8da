region = "eu-west-1"

environments = {
  dev = {
    architecture       = "arm64"
    log_retention_days = 14
    log_level          = "DEBUG"
    labeler            = "rekognition"

    # Bundles: WORK keeps requests/ and bundles/ (and a request's recipient topic lives)
    # this many days; the bundle handler's sweep (confirmed recipients, expired topics,
    # due restore checks) runs every this many minutes.
    bundle_expiration_days = 1
    bundle_sweep_minutes   = 5

    # Cold starts restore a snapshot taken after init (imports, clients, schemas): init
    # alone is 0.3-0.5 s (docs/benchmarks.md, "Cold start").
    snap_start = true

    # Well inside the module's default timeout (120 s): at 1,769 MB the transform reads
    # 1 GB in about 40 s (docs/cost.md).
    max_data_bytes = 536870912

    # 1,769 MB (one full vCPU) minimises cost x duration for the CPU-bound transform: below
    # it the same CPU work costs the same and takes longer, above it gets no faster
    # (docs/cost.md, bench/cost_model.py).
    functions = {
      transform = { memory_size = 1769, maximum_concurrency = 5 }
      archive   = { maximum_concurrency = 5 }
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

    raw_cors_allowed_origins = ["http://localhost:3000", "https://dev.sluice.example.com"]
    web_origins              = ["http://localhost:3000", "https://dev.sluice.example.com"]
    alert_emails             = []

    # Dev data is disposable: destroy may empty buckets and drop tables.
    force_destroy = true
  }
}
