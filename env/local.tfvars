# The local environment, applied to a moto server (docs/contracts.md, "Local environment").
# Another port: -var aws_endpoint_url=http://127.0.0.1:<port>.
region           = "us-east-1"
aws_endpoint_url = "http://127.0.0.1:4566"

environments = {
  local = {
    architecture       = "x86_64"
    log_retention_days = 1
    log_level          = "DEBUG"

    # moto would grab every message for a mapping that is enabled and try to run the
    # function in Docker; the local runner serves these disabled mappings itself.
    event_source_mappings_enabled = false
    labeler                       = "offline"
    max_receive_count             = 3

    # moto has no SnapStart (it always reports it off, so every plan would show a change)
    # and resolves an alias to its version when a mapping is created (another change).
    snap_start = false

    thumbnail_sizes        = [64, 128]
    bundle_url_ttl_seconds = 3600

    # Bundles: WORK keeps requests/ and bundles/ (and a request's recipient topic lives)
    # this many days; the bundle handler's sweep (confirmed recipients, expired topics,
    # due restore checks) runs every this many minutes.
    bundle_expiration_days = 1
    bundle_sweep_minutes   = 5

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

    # Data files the 30 s transform below reads comfortably on a busy laptop.
    max_data_bytes = 67108864

    # The HTTP API, served on 127.0.0.1 by the local runtime (src/sluice/local/stack/apiserver.py).
    web_origins      = ["http://localhost:3000"]
    max_upload_bytes = 268435456 # 256 MiB: enough for the end-to-end multipart upload
    # One developer and the test suite, which sends a few hundred requests in seconds (every
    # route with five bad tokens; schemathesis): the deployed defaults (50 burst, 25/s)
    # would answer some of them 429 before their 401.
    api_throttling_burst_limit = 1000
    api_throttling_rate_limit  = 500

    # The web app (web/): moto has no hosted UI, so the app signs in with a form that calls
    # the user pool's API (USER_PASSWORD_AUTH); moto has no response headers policies, so
    # the local web server sends the same headers from the Terraform output; and nothing
    # waits for edge locations that do not exist.
    web_sign_in                 = "password"
    web_security_headers_policy = false
    web_wait_for_deployment     = false
    # 8 MiB (the smallest part): a 10 MB photo already takes the multipart route here.
    web_multipart_threshold_bytes = 8388608

    # A first administrator; `sluice login` asks for a new password at first sign-in. The
    # emulator is throw-away, so a temporary password in the variables harms nothing here;
    # dev and prod create users with `aws cognito-idp admin-create-user` instead.
    seed_user = {
      email              = "admin@sluice.local"
      temporary_password = "Temporary-Passw0rd!"
      groups             = ["admin", "member"]
    }

    # Short timeouts keep the derived visibility timeouts short, so retries come quickly.
    functions = {
      transform = { memory_size = 256, timeout = 30 }
      archive   = { memory_size = 128, timeout = 15 }
      tag       = { memory_size = 256, timeout = 15 } # the offline labeler decodes whole images: a 7 MP one peaks at 162 MB
      bundle    = { memory_size = 256, timeout = 60 }
    }

    # The emulator is plain HTTP, so a TLS-only bucket policy would deny every request
    # (moto 5.2 also evaluates an unmet policy condition as an explicit deny).
    deny_insecure_transport = false

    # AWS managed encryption keys: no customer managed key to pay for or wait on.
    kms_cmk_enabled = false

    # A throw-away environment: `terraform destroy` may empty buckets and drop tables.
    force_destroy = true
  }
}
