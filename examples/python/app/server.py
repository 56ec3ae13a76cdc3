"""A small HTTP service for Slate's Python example.

python3-minimal has no http.server, so this answers HTTP/1.0 over a plain socket: every GET
gets a short text page naming the host and the time the service has been up.
"""

import socket
import sys
import threading
import time

STARTED = time.monotonic()


def answer(conn: socket.socket) -> None:
    with conn:
        conn.settimeout(5)
        try:
            request = conn.recv(4096)
        except OSError:
            return
        if not request.startswith(b"GET "):
            status, body = "405 Method Not Allowed", "only GET\n"
        else:
            up = time.monotonic() - STARTED
            status = "200 OK"
            body = f"hello from Python {sys.version.split()[0]} on {socket.gethostname()}, up {up:.0f} s\n"
        data = body.encode()
        head = f"HTTP/1.0 {status}\r\nContent-Type: text/plain\r\nContent-Length: {len(data)}\r\n\r\n"
        try:
            conn.sendall(head.encode() + data)
        except OSError:
            pass


def main() -> None:
    port = int(sys.argv[1]) if len(sys.argv) > 1 else 8000
    server = socket.create_server(("0.0.0.0", port), reuse_port=False)
    print(f"listening on port {port}", flush=True)
    while True:
        conn, _ = server.accept()
        threading.Thread(target=answer, args=(conn,), daemon=True).start()


if __name__ == "__main__":
    main()
