#!/usr/bin/env python3
"""A webhook receiver for the example stack: logs every Alertmanager
notification, one line per alert, and answers 200.

It stands in for a pager or chat integration so that the alert path of
deploy/docker-compose.yml can be watched end to end:

    docker compose -f deploy/docker-compose.yml logs -f alert-receiver

Usage: receiver.py [HOST [PORT]]   (default 127.0.0.1 8080; the compose
service passes 0.0.0.0, reachable only on the compose network: it
publishes no port.) Standard library only; Python 3.8 or later.
"""

import json
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

# Alertmanager batches alerts of a group in one notification; a bigger body
# is not a notification.
MAX_BODY = 4 * 1024 * 1024


def lines(path, payload):
    """One human line per alert of an Alertmanager webhook payload."""
    receiver = payload.get("receiver", "?")
    group = ",".join(f"{k}={v}" for k, v in sorted(payload.get("groupLabels", {}).items()))
    for alert in payload.get("alerts", []):
        labels = dict(alert.get("labels", {}))
        name = labels.pop("alertname", "?")
        severity = labels.pop("severity", "?")
        rest = " ".join(f"{k}={v}" for k, v in sorted(labels.items()))
        summary = alert.get("annotations", {}).get("summary", "")
        yield (
            f"{path} receiver={receiver} group={{{group}}} {alert.get('status', '?')} "
            f"[{severity}] {name} {rest}: {summary}"
        )


class Handler(BaseHTTPRequestHandler):
    def do_POST(self):
        length = int(self.headers.get("Content-Length") or 0)
        if length <= 0 or length > MAX_BODY:
            self.answer(400, "expected an Alertmanager notification\n")
            return
        try:
            payload = json.loads(self.rfile.read(length))
        except ValueError as e:
            self.answer(400, f"not JSON: {e}\n")
            return
        for line in lines(self.path, payload):
            print(line, flush=True)
        self.answer(200, "ok\n")

    def do_GET(self):
        self.answer(200, "alert receiver: POST Alertmanager notifications here\n")

    def answer(self, code, text):
        body = text.encode()
        self.send_response(code)
        self.send_header("Content-Type", "text/plain; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        # The notification lines are the log; request lines would drown them.
        pass


def main():
    host = sys.argv[1] if len(sys.argv) > 1 else "127.0.0.1"
    port = int(sys.argv[2]) if len(sys.argv) > 2 else 8080
    server = ThreadingHTTPServer((host, port), Handler)
    print(f"alert receiver listening on {host}:{server.server_address[1]}", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
