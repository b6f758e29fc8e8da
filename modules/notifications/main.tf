# The one event notification configuration of a bucket (S3 holds exactly one per bucket,
# so several resources for the same bucket would overwrite each other).

locals {
  indexed = [for i, q in var.queues : merge(q, { index = i })]

  # S3 rejects the whole configuration at apply time ("Configuration is ambiguously
  # defined") when two filters can match the same key for the same event type: their event
  # types overlap (equal, or one ends in * and covers the other), one prefix starts the
  # other (the empty prefix starts everything) and one suffix ends the other.
  overlapping_pairs = [
    for pair in setproduct(local.indexed, local.indexed) : pair
    if pair[0].index < pair[1].index
    && anytrue([
      for events in setproduct(pair[0].events, pair[1].events) :
      events[0] == events[1]
      || (endswith(events[0], "*") && startswith(events[1], trimsuffix(events[0], "*")))
      || (endswith(events[1], "*") && startswith(events[0], trimsuffix(events[1], "*")))
    ])
    && (startswith(pair[0].filter_prefix, pair[1].filter_prefix) || startswith(pair[1].filter_prefix, pair[0].filter_prefix))
    && (endswith(pair[0].filter_suffix, pair[1].filter_suffix) || endswith(pair[1].filter_suffix, pair[0].filter_suffix))
  ]

  overlap_descriptions = [
    for pair in local.overlapping_pairs : format(
      "%s (events %s, prefix %q, suffix %q) overlaps %s (events %s, prefix %q, suffix %q)",
      pair[0].id, join(",", pair[0].events), pair[0].filter_prefix, pair[0].filter_suffix,
      pair[1].id, join(",", pair[1].events), pair[1].filter_prefix, pair[1].filter_suffix,
    )
  ]
}

resource "aws_s3_bucket_notification" "this" {
  bucket = var.bucket_name

  dynamic "queue" {
    for_each = var.queues

    content {
      id            = queue.value.id
      queue_arn     = queue.value.queue_arn
      events        = queue.value.events
      filter_prefix = queue.value.filter_prefix == "" ? null : queue.value.filter_prefix
      filter_suffix = queue.value.filter_suffix == "" ? null : queue.value.filter_suffix
    }
  }

  lifecycle {
    precondition {
      condition     = length(local.overlapping_pairs) == 0
      error_message = "Overlapping event notification filters on bucket ${var.bucket_name}: ${join("; ", local.overlap_descriptions)}. S3 rejects such a configuration as ambiguously defined; make the prefixes or suffixes disjoint, or the event types distinct."
    }
  }
}
