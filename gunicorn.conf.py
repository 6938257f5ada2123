"""Production server settings: `gunicorn -c gunicorn.conf.py app:app`.

No preload: UnleashClient's scheduler threads and our background pools must start in each
worker after the fork (a thread does not survive a fork). Metrics: prometheus-client's
multiprocess mode, one directory per instance, set here before any worker imports
prometheus_client.
"""

import os
import shutil
import sys
import tempfile

host, port = os.environ.get("HOST", "127.0.0.1"), os.environ.get("PORT", "8000")
bind = os.environ.get("BIND", f"{host}:{port}")
workers = int(os.environ.get("WEB_CONCURRENCY", "2"))
threads = int(os.environ.get("GUNICORN_THREADS", "4"))
worker_class = "gthread"
preload_app = False
timeout = int(os.environ.get("GUNICORN_TIMEOUT", "30"))
graceful_timeout = 10
keepalive = 5
# Nothing here uses gunicorn's control interface, and its socket is one fixed path per user
# by default, which every instance on a host would share (and remove as it stops).
control_socket_disable = True
accesslog = None  # the app writes one JSON line per request
errorlog = "-"
loglevel = os.environ.get("GUNICORN_LOG_LEVEL", "info")
# "off": no line per request (make run, where a person reads the output); the metrics stay.
access_log = os.environ.get("PROGRESS_ACCESS_LOG", "on")
# A text printed once the first worker is ready to serve (make run: the URLs and tokens).
ready_message_file = os.environ.get("GUNICORN_READY_MESSAGE_FILE")

# Decided at import in every worker: the variable must be set before the app loads.
metrics_dir = os.environ.setdefault(
    "PROMETHEUS_MULTIPROC_DIR", os.path.join(tempfile.gettempdir(), f"progress-metrics-{port}")
)


def on_starting(server):
    # A fresh directory per start: files of a previous run would be summed in.
    shutil.rmtree(metrics_dir, ignore_errors=True)
    os.makedirs(metrics_dir, exist_ok=True)


def post_worker_init(worker):
    if access_log == "off":
        import logging

        logging.getLogger("progress.access").setLevel(logging.WARNING)
    if ready_message_file and worker.age == 1:  # the first worker, not each restart
        with open(ready_message_file, encoding="utf-8") as message:
            sys.stdout.write("\n" + message.read() + "\n")
        sys.stdout.flush()


def child_exit(server, worker):
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)


def worker_exit(server, worker):
    app = getattr(worker, "wsgi", None)
    if app is None or not hasattr(app, "app_context"):
        return
    from progress.flags import flag_gate
    from progress.worker import worker_state

    with app.app_context():
        worker_state().shutdown()  # let accepted cache updates finish
        flag_gate().close()  # stop UnleashClient's scheduler
