#!/usr/bin/env python3
"""Clients that send calls and never read the replies, and one that does, beside them.

Each of CONNECTIONS connections writes CALLS VerifyPlan calls of PLAN_JSON (a plan whose decision
is larger than the plan) as fast as the node reads them, and reads nothing: the node stops reading
a connection whose replies back up, but the calls it had read still answer, and their replies wait
in the node. Meanwhile a probe connection sends a call of SMALL_PLAN_JSON every half second,
reading its reply, until one is refused (RESOURCE_EXHAUSTED) or HOLD_SECONDS pass. Prints `probe 8
MESSAGE` for the first refusal (`probe never refused`; `probe unexpected CODE MESSAGE` for any
other error), then closes the hoarding connections and prints `closed`.

Usage: hoard.py GENERATED_DIR HOST PORT PKI_DIR PLAN_JSON SMALL_PLAN_JSON CALLS CONNECTIONS HOLD_SECONDS
"""
import socket, struct, sys, threading, time, uuid

gen, host, port, pki, plan_path, small_path = sys.argv[1:7]
calls, connections, hold = int(sys.argv[7]), int(sys.argv[8]), float(sys.argv[9])
sys.path.insert(0, gen)
from countersign.v1 import envelope_pb2, audit_pb2  # noqa: E402
import orchestrator  # noqa: E402  (this folder's)

plan = open(plan_path, "rb").read()
small = open(small_path, "rb").read()


def frame(call_id, plan_bytes, deadline_ms=120000):
    request = audit_pb2.VerifyPlanRequest(
        request_id=f"hoard-{uuid.uuid4()}", user_request="Create the storage buckets for the analytics team",
        owner="maria.lopez@acmetech.example", plan=plan_bytes, plan_format="terraform-json")
    env = envelope_pb2.Envelope(call_id=call_id, method="/countersign.v1.Audit/VerifyPlan",
                                body=request.SerializeToString(), deadline_ms=deadline_ms)
    payload = env.SerializeToString()
    return b"\x00" + struct.pack(">I", len(payload)) + payload


def connect():
    return orchestrator.connect(host, port, pki, timeout=30)


hoarders = []
lock = threading.Lock()


def hoard():
    sock = connect()
    with lock:
        hoarders.append(sock)
    data = b"".join(frame(i + 1, plan) for i in range(calls))
    sock.settimeout(2)  # a send that waits this long: the node has stopped reading this connection
    view = memoryview(data)
    try:
        while view:
            view = view[sock.send(view[:1 << 16]):]
    except (socket.timeout, OSError):
        pass


threads = [threading.Thread(target=hoard) for _ in range(connections)]
for t in threads:
    t.start()

probe = connect()
refusal = None
deadline = time.monotonic() + hold
call_id = 0
while refusal is None and time.monotonic() < deadline:
    time.sleep(0.5)
    call_id += 1
    probe.sendall(frame(call_id, small, deadline_ms=10000))
    buffer = b""
    while len(buffer) < 5 or len(buffer) < 5 + struct.unpack(">I", buffer[1:5])[0]:
        chunk = probe.recv(1 << 16)
        if not chunk:
            raise SystemExit("the probe's connection was closed")
        buffer += chunk
    env = envelope_pb2.Envelope()
    env.ParseFromString(buffer[5:])
    if env.status.code != 0:
        refusal = env.status
if refusal is None:
    print("probe never refused", flush=True)
else:
    print(f"probe {'' if refusal.code == 8 else 'unexpected '}{refusal.code} {refusal.message}", flush=True)
for t in threads:
    t.join()
with lock:
    for sock in hoarders:
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))  # a reset: unread data is dropped
            sock.close()
        except OSError:
            pass
probe.close()
print("closed", flush=True)
