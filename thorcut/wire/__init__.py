"""What crosses the wire to and from a backend: the WebSocket stream client (:mod:`.stream`),
the backend's URLs and headers (:mod:`.urls`), the recording format (:mod:`.recording`) and the
JSON parsing they share (:mod:`.jsonfast`). No judging here: that is :mod:`thorcut.compare`."""
