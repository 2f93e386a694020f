#!/usr/bin/env python3
"""A flood of large plans, pipelined: more request bytes than a node may hold in flight.

Each of CONNECTIONS connections sends its share of CALLS VerifyPlan calls with the plan PLAN_JSON
as fast as TCP takes them, without waiting for replies, and reads the replies as they come. Prints one line
per (status code, start of message) with its count, then `answered N` and `lost N` (calls whose
connection ended before their reply).

Usage: flood.py GENERATED_DIR HOST PORT PKI_DIR PLAN_JSON CALLS CONNECTIONS
"""
import collections, select, ssl, struct, sys, threading, time, uuid

gen, host, port, pki, plan_path = sys.argv[1:6]
calls, connections = int(sys.argv[6]), int(sys.argv[7])
sys.path.insert(0, gen)
from countersign.v1 import envelope_pb2, audit_pb2  # noqa: E402
import orchestrator  # noqa: E402  (this folder's)

plan = open(plan_path, "rb").read()
statuses = collections.Counter()
answered, lost = 0, 0
lock = threading.Lock()


def connection(share):
    global answered
    sock = orchestrator.connect(host, port, pki, timeout=300)
    # Every call is written as fast as TCP takes it, and replies are read as they come, in one
    # thread (Python's ssl sockets may not be used from two at once): the socket is non-blocking,
    # and the loop writes what it can, reads what there is, and waits in select() for either. A
    # client that wrote everything before reading would deadlock once its replies filled the
    # buffers: the server stops reading a client that does not read.
    pending = bytearray()
    for i in range(share):
        request = audit_pb2.VerifyPlanRequest(
            request_id=f"flood-{uuid.uuid4()}", user_request="Deploy the web stack",
            owner="maria.lopez@acmetech.example", plan=plan, plan_format="terraform-json")
        env = envelope_pb2.Envelope(call_id=i + 1, method="/countersign.v1.Audit/VerifyPlan",
                                    body=request.SerializeToString(), deadline_ms=120000)
        payload = env.SerializeToString()
        pending += b"\x00" + struct.pack(">I", len(payload)) + payload
    view = memoryview(pending)
    buffer = bytearray()
    got = 0
    sock.setblocking(False)
    deadline = time.monotonic() + 600
    try:
        while got < share and time.monotonic() < deadline:
            progressed = False
            if view:
                try:
                    n = sock.send(view[:1 << 20])
                    view = view[n:]
                    progressed = n > 0
                except (ssl.SSLWantWriteError, ssl.SSLWantReadError, BlockingIOError):
                    pass
            try:
                chunk = sock.recv(1 << 20)
                if not chunk:
                    raise EOFError("connection closed by the server")
                buffer += chunk
                progressed = True
            except (ssl.SSLWantReadError, ssl.SSLWantWriteError, BlockingIOError):
                pass
            while len(buffer) >= 5 and len(buffer) >= 5 + struct.unpack(">I", buffer[1:5])[0]:
                length = struct.unpack(">I", buffer[1:5])[0]
                env = envelope_pb2.Envelope()
                env.ParseFromString(bytes(buffer[5:5 + length]))
                del buffer[:5 + length]
                got += 1
                with lock:
                    statuses[(env.status.code, env.status.message[:60])] += 1
                    answered += 1
            if not progressed and sock.pending() == 0:
                select.select([sock], [sock] if view else [], [], 1.0)
    except (OSError, EOFError):
        pass
    finally:
        sock.close()


shares = [calls // connections + (1 if k < calls % connections else 0) for k in range(connections)]
threads = [threading.Thread(target=connection, args=(share,)) for share in shares]
for t in threads:
    t.start()
for t in threads:
    t.join()
lost = calls - answered
for (code, message), n in statuses.most_common():
    print(f"status {code} {n} {message}")
print(f"answered {answered}")
print(f"lost {lost}")
