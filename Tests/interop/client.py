#!/usr/bin/env python3
"""Interoperability check: a client that shares no code with the server.

Speaks the framed protocol over TLS 1.3 with Python's ssl, encodes messages with protoc-generated
Python code, pins the server's key, submits a plan, and checks the decision's DSSE signature
(`cryptography`) and its RFC 9162 inclusion proof against a signed checkpoint with code of its own.

Usage: client.py GENERATED_DIR HOST PORT PKI_DIR SERVER_PIN SCENARIO_JSON
"""
import base64, hashlib, json, socket, ssl, struct, sys, time, uuid

gen, host, port, pki, server_pin, scenario_path = sys.argv[1:7]
sys.path.insert(0, gen)
from countersign.v1 import envelope_pb2, audit_pb2, custody_pb2  # noqa: E402
from cryptography import x509  # noqa: E402
from cryptography.hazmat.primitives import hashes, serialization  # noqa: E402
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa  # noqa: E402

passed, failed = 0, 0


def check(name, ok, detail=""):
    global passed, failed
    if ok:
        passed += 1
        print(f"  ok    {name}")
    else:
        failed += 1
        print(f"  FAIL  {name} {detail}")


ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
ctx.minimum_version = ssl.TLSVersion.TLSv1_3
ctx.load_verify_locations(f"{pki}/ca.crt")
ctx.load_cert_chain(f"{pki}/orchestrator.crt", f"{pki}/orchestrator.key")
sock = ctx.wrap_socket(socket.create_connection((host, int(port)), timeout=20), server_hostname="localhost")
cert = x509.load_der_x509_certificate(sock.getpeercert(binary_form=True))
spki = cert.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
check("server key is the pinned one", hashlib.sha256(spki).hexdigest() == server_pin)


def read_exactly(n):
    data = b""
    while len(data) < n:
        chunk = sock.recv(n - len(data))
        if not chunk:
            raise EOFError("connection closed")
        data += chunk
    return data


def send(call_id, method, request):
    env = envelope_pb2.Envelope(call_id=call_id, method=method, body=request.SerializeToString(), deadline_ms=15000)
    payload = env.SerializeToString()
    sock.sendall(b"\x00" + struct.pack(">I", len(payload)) + payload)


def receive():
    flags, length = struct.unpack(">BI", read_exactly(5))
    assert flags == 0
    env = envelope_pb2.Envelope()
    env.ParseFromString(read_exactly(length))
    return env


def call(method, request, reply_cls):
    send(1, method, request)
    env = receive()
    if env.status.code != 0:
        raise RuntimeError(f"{method}: status {env.status.code} {env.status.message}")
    reply = reply_cls()
    reply.ParseFromString(env.body)
    return reply


def pae(payload_type, body):
    t = payload_type.encode()
    return b"DSSEv1 %d %s %d %s" % (len(t), t, len(body), body)


def verify(spki_der, signature, payload_type, body):
    key = serialization.load_der_public_key(spki_der)
    try:
        if isinstance(key, ec.EllipticCurvePublicKey):
            key.verify(signature, pae(payload_type, body), ec.ECDSA(hashes.SHA256()))
        elif isinstance(key, rsa.RSAPublicKey):
            key.verify(signature, pae(payload_type, body),
                       padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=32), hashes.SHA256())
        else:
            return False
        return True
    except Exception:
        return False


def node(left, right):
    return hashlib.sha256(b"\x01" + left + right).digest()


def root_from_inclusion(leaf_hash, index, size, proof):
    """RFC 9162 section 2.1.3.2."""
    if index >= size:
        return None
    fn, sn, r = index, size - 1, leaf_hash
    for p in proof:
        if sn == 0:
            return None
        if fn & 1 or fn == sn:
            r = node(p, r)
            if not fn & 1:
                while not fn & 1 and fn != 0:
                    fn >>= 1
                    sn >>= 1
        else:
            r = node(r, p)
        fn >>= 1
        sn >>= 1
    return r if sn == 0 else None


scenario = json.load(open(scenario_path))["request"]
plan_bytes = json.dumps(scenario["plan"], sort_keys=True).encode()
request = audit_pb2.VerifyPlanRequest(
    request_id=f"interop-{uuid.uuid4()}", user_request=scenario["user_request"], owner=scenario["owner"],
    plan=plan_bytes, plan_format=scenario["plan_format"])
print(f"interop: {host}:{port} with a protoc-generated Python client")

# Two calls in flight on one connection, answered by call_id.
send(7, "/countersign.v1.Audit/Health", audit_pb2.HealthRequest())
send(8, "/countersign.v1.Audit/VerifyPlan", request)
replies = {e.call_id: e for e in (receive(), receive())}
check("two calls in flight, matched by call_id", set(replies) == {7, 8})
health = audit_pb2.HealthResponse()
health.ParseFromString(replies[7].body)
check("Health names the caller", health.principal == "orchestrator", health.principal)
decision = audit_pb2.Decision()
decision.ParseFromString(replies[8].body)
check("VerifyPlan answered", replies[8].status.code == 0, replies[8].status.message)
check("the decision is APPROVED", decision.verdict == audit_pb2.VERDICT_APPROVED, str(decision.verdict))

keys = call("/countersign.v1.Audit/ListKeys", custody_pb2.ListKeysRequest(), custody_pb2.ListKeysResponse)
by_id = {k.key_id: k.spki_der for k in keys.keys}
check("key ids are SHA-256 of the SPKI", all(hashlib.sha256(v).hexdigest() == k for k, v in by_id.items()))
check("the signing key is listed", decision.key_id in by_id)
check("DSSE signature verifies",
      verify(by_id.get(decision.key_id, b""), decision.signature, decision.payload_type, decision.statement))
tampered = bytearray(decision.statement)
tampered[len(tampered) // 2] ^= 1
check("a flipped byte does not verify",
      not verify(by_id.get(decision.key_id, b""), decision.signature, decision.payload_type, bytes(tampered)))

statement = audit_pb2.DecisionStatement()
statement.ParseFromString(decision.statement)
check("statement binds the request id", statement.request_id == request.request_id)
check("statement binds the plan bytes", statement.plan_sha256 == hashlib.sha256(plan_bytes).digest())
check("statement binds the words", statement.user_request_sha256 == hashlib.sha256(request.user_request.encode()).digest())
check("statement names agent and owner", statement.agent == "orchestrator" and statement.owner == request.owner)

checkpoint = None
for _ in range(50):
    checkpoint = call("/countersign.v1.Audit/GetCheckpoint", audit_pb2.GetCheckpointRequest(), audit_pb2.Checkpoint)
    if checkpoint.tree_size > decision.ledger_index:
        break
    time.sleep(0.2)
check("a checkpoint covers the decision", checkpoint.tree_size > decision.ledger_index)
check("checkpoint signature verifies",
      verify(by_id.get(checkpoint.key_id, b""), checkpoint.signature,
             "application/vnd.countersign.checkpoint+text", checkpoint.checkpoint))
lines = checkpoint.checkpoint.decode().split("\n")
check("checkpoint text: origin, size, root, newline",
      len(lines) >= 4 and lines[-1] == "" and int(lines[1]) == checkpoint.tree_size
      and base64.b64decode(lines[2]) == checkpoint.root_hash)

proof = call("/countersign.v1.Audit/ProveInclusion",
             audit_pb2.ProveInclusionRequest(leaf_index=decision.ledger_index, tree_size=checkpoint.tree_size),
             audit_pb2.InclusionProof)
leaf = hashlib.sha256(b"\x00" + decision.statement).digest()
check("inclusion proof leads to the checkpoint's root",
      root_from_inclusion(leaf, decision.ledger_index, checkpoint.tree_size, list(proof.hashes)) == checkpoint.root_hash)
check("a wrong leaf does not",
      root_from_inclusion(hashlib.sha256(b"\x00x").digest(), decision.ledger_index, checkpoint.tree_size,
                          list(proof.hashes)) != checkpoint.root_hash)

# Garbage body under a valid envelope: INVALID_ARGUMENT under its own call_id, connection open.
env = envelope_pb2.Envelope(call_id=9, method="/countersign.v1.Audit/VerifyPlan", body=b"\x0f\x0f")
payload = env.SerializeToString()
sock.sendall(b"\x00" + struct.pack(">I", len(payload)) + payload)
bad = receive()
check("garbage body is INVALID_ARGUMENT under its call_id", bad.call_id == 9 and bad.status.code == 3)
send(10, "/countersign.v1.Audit/Nope", audit_pb2.HealthRequest())
nope = receive()
check("unknown method is UNIMPLEMENTED", nope.call_id == 10 and nope.status.code == 12)
sock.close()
print(f"interop: {passed} passed, {failed} failed")
sys.exit(1 if failed else 0)
