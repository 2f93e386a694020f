#!/usr/bin/env python3
"""Connections that each send most of a large frame and then stop, holding it incomplete.

Each of CONNECTIONS connections sends the header of a 4,000,000-byte frame and 3,900,000 bytes of
it, as fast as the node reads them (a send that waits 3 s is given up: the node has stopped reading
the connection), then all hold their connections open for HOLD_SECONDS and close them. Prints the
bytes the node's side took in and how many connections got everything through.

Usage: partial.py HOST PORT PKI_DIR CONNECTIONS HOLD_SECONDS
"""
import socket, struct, sys, threading, time

import orchestrator

host, port, pki = sys.argv[1], int(sys.argv[2]), sys.argv[3]
connections, hold = int(sys.argv[4]), float(sys.argv[5])
data = b"\x00" + struct.pack(">I", 4_000_000) + b"\x0a" * 3_900_000
sent = [0] * connections
sockets = []
lock = threading.Lock()


def send_most_of_a_frame(i):
    sock = orchestrator.connect(host, port, pki, timeout=30)
    with lock:
        sockets.append(sock)
    sock.settimeout(3)
    view = memoryview(data)
    try:
        while view:
            n = sock.send(view[:1 << 16])
            sent[i] += n
            view = view[n:]
    except (socket.timeout, OSError):
        pass


threads = [threading.Thread(target=send_most_of_a_frame, args=(i,)) for i in range(connections)]
for t in threads:
    t.start()
for t in threads:
    t.join()
print(f"sent {sum(sent) // 1_000_000} MB; {sum(1 for n in sent if n == len(data))} of {connections} connections sent it all", flush=True)
time.sleep(hold)
for sock in sockets:
    sock.close()
print("closed", flush=True)
