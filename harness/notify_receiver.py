#!/usr/bin/env python3
"""Binds a real AF_UNIX datagram socket (a path, or @name for an abstract one), as systemd does for
NOTIFY_SOCKET, and prints every datagram it receives as one JSON string per line."""
import json, os, socket, sys

addr = sys.argv[1]
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.bind("\0" + addr[1:] if addr.startswith("@") else addr)
print(json.dumps("listening"), flush=True)
while True:
    data = s.recv(65536)
    print(json.dumps(data.decode("utf-8", "replace")), flush=True)
