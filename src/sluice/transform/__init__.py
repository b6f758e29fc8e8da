"""The transform's logic; its function, ``sluice.handlers.transform``, runs the steps.

* :mod:`sluice.transform.sources`: the RAW object an event names, as S3 has it now
  (current, a duplicate, stale, or deleted before it was processed), looked at before the
  work and again after it.
* :mod:`sluice.transform.data_files`: a data file's valid records and errors report,
  streamed, within the invocation's time.
* :mod:`sluice.transform.image_files`: an image's thumbnails and its metadata item.
* :mod:`sluice.transform.outputs`: a key's PROCESSED outputs kept in line with its
  receipt whatever its versions do (left behind, deleted before or while processing).
"""
