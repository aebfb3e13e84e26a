"""gunicorn settings, each overridable from the environment (a --bind on the command line wins)."""
import os

bind = os.environ.get("GUNICORN_BIND", "127.0.0.1:8000")
# Requests mostly wait on MySQL and Redis, so a few threads per process keep each core busy.
workers = int(os.environ.get("WEB_CONCURRENCY", (os.cpu_count() or 1) * 2))
worker_class = "gthread"
threads = int(os.environ.get("GUNICORN_THREADS", 4))
timeout = int(os.environ.get("GUNICORN_TIMEOUT", 30))
graceful_timeout = 30
keepalive = 5
# Recycle workers now and then so a slow leak cannot grow without bound.
max_requests = 20000
max_requests_jitter = 2000
# Import the app once in the master; MySQL pools and Redis sockets are made after the fork.
preload_app = True
accesslog = os.environ.get("GUNICORN_ACCESS_LOG", "-")
errorlog = "-"
loglevel = os.environ.get("LOG_LEVEL", "info")


def post_worker_init(worker):
    # Each worker drains the outbox in the background, so events a request could not
    # push (Redis was down) reach Redis once it is back.
    from app import start_relay_thread

    start_relay_thread(worker.wsgi)
