"""The HTTP API's logic; its function, ``sluice.handlers.api``, only routes requests here.

* :mod:`sluice.api.protocol`: the HTTP side with no AWS in it: who is calling (the claims
  API Gateway's JWT authorizer verified), request bodies checked against their schemas,
  and the JSON and ``{"error": ...}`` responses.
* :mod:`sluice.api.views`: what a client may see of an image, an input and a bundle.
* :mod:`sluice.api.service`: :class:`~sluice.api.service.Api`, the routes' logic (uploads,
  images, labels, bundles, inputs) over its clients and settings, on the storage modules.
"""
