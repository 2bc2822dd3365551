#!/usr/bin/env python3
"""Serves a directory on 127.0.0.1 like `python3 -m http.server`, but sends a file's precompressed
copy (FILE.br, else FILE.gz, as web/optimize.sh writes them) when the browser accepts that encoding.

Usage: serve.py DIRECTORY PORT
"""

import functools
import http.server
import os
import sys


class Precompressed(http.server.SimpleHTTPRequestHandler):
    def send_head(self):
        path = self.translate_path(self.path)
        accepted = self.headers.get("Accept-Encoding", "")
        for encoding, suffix in (("br", ".br"), ("gzip", ".gz")):
            if encoding in accepted and os.path.isfile(path + suffix):
                with open(path + suffix, "rb") as f:
                    body = f.read()
                self.send_response(200)
                self.send_header("Content-Type", self.guess_type(path))
                self.send_header("Content-Encoding", encoding)
                self.send_header("Content-Length", str(len(body)))
                self.send_header("Vary", "Accept-Encoding")
                self.end_headers()
                return _Body(body)
        return super().send_head()

    def log_message(self, *args):
        pass


class _Body:
    """A file-like object over bytes, for `copyfile`."""

    def __init__(self, data):
        self.data = data

    def read(self, n=-1):
        data, self.data = (self.data, b"") if n < 0 else (self.data[:n], self.data[n:])
        return data

    def close(self):
        pass


def main():
    directory, port = sys.argv[1], int(sys.argv[2])
    handler = functools.partial(Precompressed, directory=directory)
    http.server.ThreadingHTTPServer(("127.0.0.1", port), handler).serve_forever()


if __name__ == "__main__":
    main()
