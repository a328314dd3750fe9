"""The AsyncAPI 3.0 description of a backend's WebSocket stream: generated from the manifest
(:mod:`.document`), with ``data`` schemas read from an OpenAPI document (:mod:`.openapi`), read from
a file or URL (:mod:`.sources`), and frames checked against it (:mod:`.validate`, which needs
``jsonschema``, imported on first use).

What this package exports is public: a backend describes its own stream with :func:`from_openapi`
(the reference backend serves the result at ``/api/asyncapi.json``).
"""

from thorcut.wire.asyncapi.document import DataSchemas, document, server_object
from thorcut.wire.asyncapi.openapi import from_openapi, openapi_data_schemas

__all__ = ["DataSchemas", "document", "from_openapi", "openapi_data_schemas", "server_object"]
