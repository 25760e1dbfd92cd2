"""The Celery app vigil configures from the launcher's options, on both sides of the broker.

The launcher sends run tasks by name (it never imports the task's code); `vigil celery
worker` registers the task (`vigil.celery.task`) on the same app and runs Celery's own
worker. One task per run, acknowledged late (when the run ends), one message prefetched
per pool process, its start tracked in the result backend (the launcher's health check
reads it).
"""

from __future__ import annotations

import celery

from vigil.celery import options as options_mod

TASK_NAME = "vigil.run"


def build_app(options: options_mod.CeleryOptions) -> celery.Celery:
    """A Celery app for these options (nothing connects until it is used)."""
    broker = options_mod.broker_url(options)
    app = celery.Celery(
        "vigil",
        broker=broker,
        backend=options_mod.result_backend(options),
        set_as_current=False,
    )
    timeout = options.connect_timeout
    app.conf.update(
        task_default_queue=options.queue,
        task_create_missing_queues=True,
        task_acks_late=True,
        task_reject_on_worker_lost=False,
        task_track_started=True,
        worker_prefetch_multiplier=1,
        task_serializer="json",
        result_serializer="json",
        accept_content=["json"],
        result_expires=int(options.result_expires),
        result_extended=True,
        broker_connection_timeout=timeout,
        broker_connection_retry_on_startup=True,
        broker_transport_options=_transport_options(timeout),
        result_backend_transport_options=_transport_options(timeout),
        redis_socket_connect_timeout=timeout,
        redis_socket_timeout=timeout,
        redis_retry_on_timeout=False,
        worker_hijack_root_logger=False,
        worker_redirect_stdouts=False,
        worker_cancel_long_running_tasks_on_connection_loss=False,
    )
    return app


def _transport_options(timeout: float) -> dict[str, object]:
    return {
        "visibility_timeout": options_mod.VISIBILITY_TIMEOUT,
        "socket_connect_timeout": timeout,
        "socket_timeout": timeout,
        "max_retries": 0,
    }
