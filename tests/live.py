"""A live HTTP server of the test app in a thread (werkzeug), for tools that need a real socket."""
import threading
from contextlib import contextmanager

from werkzeug.serving import make_server


@contextmanager
def serving(flask_app):
    """Yield the base URL of flask_app served on a free port of 127.0.0.1; stop it afterwards."""
    server = make_server("127.0.0.1", 0, flask_app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, name="live-server", daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        thread.join(5)
        server.server_close()
