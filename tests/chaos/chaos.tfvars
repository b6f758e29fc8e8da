# The chaos environment of tests/e2e/test_chaos.py, applied after env/local.tfvars:
#   sluice up --var-file tests/chaos/chaos.tfvars --environment chaos
# It replaces the environments map, and `up` keeps its state under its own key
# (sluice/chaos/terraform.tfstate), so the local environment is never touched.
environments = {
  chaos = {
    architecture       = "x86_64"
    log_retention_days = 1
    log_level          = "INFO"

    # The local runner serves the (disabled) mappings, with the fault-injection preload.
    event_source_mappings_enabled = false
    labeler                       = "offline"

    # With a quarter of the invocations failing (about one message in ten per delivery),
    # two receives dead-letter a few messages, so redrive is exercised, but not most.
    max_receive_count = 2

    thumbnail_sizes = [32, 64]

    # Visibility timeout = 6 x timeout: 18 s and 12 s, so retry rounds come quickly.
    # The inputs are small (images up to 256 px): a batch takes well under a second.
    functions = {
      transform = { memory_size = 256, timeout = 3, batch_size = 5 }
      archive   = { memory_size = 128, timeout = 2, batch_size = 10 }
      tag       = { memory_size = 128, timeout = 2, batch_size = 10 }
      bundle    = { memory_size = 256, timeout = 30 }
    }

    deny_insecure_transport = false
    force_destroy           = true

    # The chaos run uses neither the web app nor the HTTP API and its sign-in: not
    # applying them saves their 56 resources (the distribution, its bucket and files; the
    # API's routes, its function and roles; the user pool) from every run's setup, and
    # `sluice up` starts no API server. As env/local.tfvars, sign-in by password (moto has
    # no hosted UI) should the switches be turned back on.
    web         = { enabled = false }
    api         = { enabled = false }
    auth        = { enabled = false }
    web_sign_in = "password"
  }
}
