#!/usr/bin/env python3
"""An OTLP/HTTP sink for the benches: answers every POST /v1/traces with 200
and an empty ExportTraceServiceResponse, and counts the spans it was sent
(each span carries the name "appauth.decision" once), so a bench can say
how many decisions were exported.

    otlp-sink.py PORT COUNT_FILE
"""
import http.server
import sys
import threading

port, count_file = int(sys.argv[1]), sys.argv[2]
lock = threading.Lock()
spans = 0


class Sink(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_POST(self):
        global spans
        body = self.rfile.read(int(self.headers.get("content-length", 0)))
        with lock:
            spans += body.count(b"appauth.decision")
            with open(count_file, "w") as f:
                f.write(f"{spans}\n")
        self.send_response(200)
        self.send_header("content-type", "application/x-protobuf")
        self.send_header("content-length", "0")
        self.end_headers()

    def log_message(self, *args):
        pass


http.server.ThreadingHTTPServer(("127.0.0.1", port), Sink).serve_forever()
