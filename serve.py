"""Start gunicorn with gunicorn.conf.py: python serve.py [gunicorn options, e.g. --bind].

gunicorn reads WEB_CONCURRENCY itself, when it is imported and before gunicorn.conf.py is, and a
bad value stops it with a traceback. This checks that variable first, with one line naming it;
gunicorn.conf.py checks the others and the app its own (config.py). make run and
deploy/im-api.service start gunicorn this way.
"""
import os
import sys

from config import integer

WORKERS = integer(1, 1000)  # as gunicorn.conf.py takes it


def check_workers() -> None:
    """Stop with one line if WEB_CONCURRENCY is set and is not a number of workers."""
    raw = os.environ.get("WEB_CONCURRENCY")
    if raw is None:
        return
    try:
        WORKERS(raw)
    except ValueError as exc:
        raise SystemExit(f"bad setting: WEB_CONCURRENCY={raw!r}: {exc}") from None


def main(args: list[str]) -> None:
    check_workers()
    from gunicorn.app.wsgiapp import run  # only now: importing gunicorn reads WEB_CONCURRENCY

    here = os.path.dirname(os.path.abspath(__file__))
    sys.argv = ["gunicorn", "-c", os.path.join(here, "gunicorn.conf.py"), "--chdir", here, *args, "app:app"]
    run()


if __name__ == "__main__":
    main(sys.argv[1:])
