"""A quiet threaded static file server on loopback for bench/artifacts.sh (stops after 30 min)."""
import functools, http.server, sys, threading

port, root = int(sys.argv[1]), sys.argv[2]

class Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass

srv = http.server.ThreadingHTTPServer(("127.0.0.1", port), functools.partial(Quiet, directory=root))
threading.Timer(1800, srv.shutdown).start()
srv.serve_forever()
