"""Prometheus metrics (``/metrics``). With ``PROMETHEUS_MULTIPROC_DIR`` set (``thorcut dev up``
sets it) every process writes its own files and any worker serves the sum; otherwise the metrics
are this process's."""

from __future__ import annotations

import os

from django.http import HttpRequest, HttpResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_http_methods
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest

CONNECTIONS = Gauge("thor_ws_connections", "Open WebSocket connections", multiprocess_mode="livesum")
MESSAGES_SENT = Counter("thor_ws_messages_sent_total", "Messages sent to WebSocket clients", ["type"])
MESSAGES_DROPPED = Counter("thor_ws_messages_dropped_total", "Messages dropped before a client", ["type", "reason"])
BAD_FRAMES = Counter("thor_ws_bad_frames_total", "Client frames refused (error reply or close)", ["reason"])
SERVER_CLOSES = Counter("thor_ws_server_closes_total", "WebSocket connections the server closed", ["reason"])
RESUMES = Counter("thor_ws_resumes_total", "Resumes answered (asked by a client, or a worker healing)", ["kind"])
RESUME_ENVELOPES = Counter("thor_ws_resume_envelopes_total", "Envelopes resumes sent", ["how"])
PATH_BREAKS = Counter("thor_ws_path_breaks_total", "Times a worker found its channel-layer path broken", ["why"])
BROADCAST_QUEUED = Counter("thor_broadcast_queued_total", "Messages handed to the broadcaster", ["type"])
BROADCAST_DROPPED = Counter("thor_broadcast_dropped_total", "Messages the broadcaster dropped", ["type", "reason"])
BROADCAST_QUEUE_DEPTH = Gauge("thor_broadcast_queue_depth", "Messages waiting in the broadcast queue",
                              multiprocess_mode="livesum")  # fmt: skip
JOB_SECONDS = Histogram("thor_job_duration_seconds", "Job run time", ["job"],
                        buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0))  # fmt: skip
TICK_LATENESS = Histogram("thor_heartbeat_lateness_seconds", "How late each heartbeat tick started",
                          buckets=(0.0005, 0.001, 0.002, 0.005, 0.01, 0.05, 0.1, 1.0))  # fmt: skip
FLAG_VERSION = Gauge("thor_flag_version", "Flag version applied by this process", ["feature"],
                     multiprocess_mode="max")  # fmt: skip


@csrf_exempt  # so that a POST gets the 405 below, not a CSRF 403
@require_http_methods(["GET", "HEAD"])  # anything else: 405 with `Allow: GET, HEAD` (issue 10)
def metrics_view(request: HttpRequest) -> HttpResponse:
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]  # its __init__ is unannotated
        body = generate_latest(registry)
    else:
        body = generate_latest()
    return HttpResponse(body, content_type=CONTENT_TYPE_LATEST)
