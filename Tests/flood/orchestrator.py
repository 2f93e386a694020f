"""The orchestrator's mutual-TLS connection to a node, for the flood clients (flood.py, hoard.py,
partial.py): TLS 1.3, the dev CA, the orchestrator's certificate from PKI_DIR."""
import functools, socket, ssl


@functools.lru_cache(maxsize=None)
def _context(pki):
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.minimum_version = ssl.TLSVersion.TLSv1_3
    context.load_verify_locations(f"{pki}/ca.crt")
    context.load_cert_chain(f"{pki}/orchestrator.crt", f"{pki}/orchestrator.key")
    return context


def connect(host, port, pki, timeout):
    """A TLS socket to HOST:PORT as the orchestrator; `timeout` bounds each blocking operation."""
    return _context(pki).wrap_socket(socket.create_connection((host, int(port)), timeout=timeout), server_hostname="localhost")
