#!/usr/bin/env python3
"""One RESP3 connection with CLIENT TRACKING on, as the near-cache's
invalidation channel would hold it, for scripts/tracking-cost.sh.

  tracking_client.py PORT bcast [PREFIX]   # CLIENT TRACKING on BCAST [PREFIX p]
  tracking_client.py PORT default HOT      # default tracking, after reading
                                           # key:000000000000 .. HOT-1

In default mode Redis remembers every key the connection read; each
invalidated key is read again at once, as a cache refilling a hot key
would, so it stays tracked. Prints "ready" once set up, then counts
invalidation pushes until a line arrives on standard input, and prints
"messages keys" (keys named in them).
"""
import select
import socket
import sys


class Conn:
    def __init__(self, port):
        self.sock = socket.create_connection(("127.0.0.1", port))
        self.buf = b""
        self.pos = 0

    def send(self, *commands):
        out = []
        for args in commands:
            out.append(b"*%d\r\n" % len(args))
            for a in args:
                a = a if isinstance(a, bytes) else str(a).encode()
                out.append(b"$%d\r\n%s\r\n" % (len(a), a))
        self.sock.sendall(b"".join(out))

    def fill(self):
        data = self.sock.recv(1 << 20)
        if not data:
            raise EOFError("connection closed")
        self.buf = self.buf[self.pos:] + data
        self.pos = 0

    def line(self):
        while True:
            end = self.buf.find(b"\r\n", self.pos)
            if end >= 0:
                line, self.pos = self.buf[self.pos:end], end + 2
                return line
            self.fill()

    def frame(self):
        """One frame: (is_push, value)."""
        line = self.line()
        kind, rest = line[:1], line[1:]
        if kind in b"$=":
            n = int(rest)
            if n < 0:
                return False, None
            while len(self.buf) - self.pos < n + 2:
                self.fill()
            value, self.pos = self.buf[self.pos:self.pos + n], self.pos + n + 2
            return False, value
        if kind in b"*>~%":
            n = int(rest) * (2 if kind == b"%" else 1)
            return kind == b">", [self.frame()[1] for _ in range(max(n, 0))]
        if kind == b"-":
            raise RuntimeError(line.decode())
        return False, rest

    def reply(self, on_push):
        """The next reply; pushes before it go to on_push."""
        while True:
            push, value = self.frame()
            if not push:
                return value
            on_push(value)


def main():
    port, mode = int(sys.argv[1]), sys.argv[2]
    hot = int(sys.argv[3]) if mode == "default" else 0
    prefix = [b"PREFIX", sys.argv[3].encode()] if mode == "bcast" and len(sys.argv) > 3 else []
    conn = Conn(port)
    counts = {"messages": 0, "keys": 0}
    stale = []

    def on_push(value):
        if value and value[0] == b"invalidate":
            counts["messages"] += 1
            keys = value[1] or []
            counts["keys"] += len(keys)
            stale.extend(keys)

    conn.send([b"HELLO", b"3"])
    conn.reply(on_push)
    conn.send([b"CLIENT", b"TRACKING", b"on"] + ([b"BCAST"] + prefix if mode == "bcast" else []))
    conn.reply(on_push)
    for start in range(0, hot, 1000):
        batch = range(start, min(start + 1000, hot))
        conn.send(*([b"GET", b"key:%012d" % i] for i in batch))
        for _ in batch:
            conn.reply(on_push)
    print("ready", flush=True)
    while True:
        ready, _, _ = select.select([conn.sock, sys.stdin], [], [])
        if sys.stdin in ready:
            break
        conn.fill()
        while conn.pos < len(conn.buf):
            on_push(conn.frame()[1])
        if mode == "default" and stale:
            keys, stale[:] = list(stale), []
            conn.send(*([b"GET", k] for k in keys))
            for _ in keys:
                conn.reply(on_push)
    print(counts["messages"], counts["keys"], flush=True)


if __name__ == "__main__":
    main()
