"""TLS in front of the ECS emulator, for the fleet benchmark's TLS mode (FLEET_TLS=1).

Real ECS endpoints are HTTPS, so the plugin's production path runs rustls (handshake, certificate
verification against the native root store). This relay terminates TLS on 127.0.0.1 with a
throw-away CA and server certificate (RSA 2048, as AWS's own certificates) and passes the bytes on
to the emulator's plain HTTP port.

    python tls_relay.py --upstream-port 5000 [--bundle /etc/ssl/certs/ca-certificates.crt]

Prints ``READY <port> <ca-bundle-path>`` once listening: point the plugin at
``https://127.0.0.1:<port>`` with ``SSL_CERT_FILE=<ca-bundle-path>`` (the system bundle, if
found, plus the throw-away CA, so the root store is as large as in production). Exits when stdin
closes.
"""

import argparse
import os
import socket
import ssl
import sys
import tempfile
import threading

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "support"))
from ecs_emulator import write_test_certs  # noqa: E402  (the emulator's test CA, RSA keys here)


def make_certs(directory: str, bundle: str | None) -> tuple[str, str, str]:
    """Server certificate and key from a throw-away CA (RSA 2048, as AWS's own), and a CA bundle: the system one
    (if found) plus that CA, so the client's root store is as large as in production."""
    ca_path, cert_path, key_path = write_test_certs(directory, rsa_keys=True)
    bundle_path = os.path.join(directory, "ca-bundle.pem")
    with open(bundle_path, "wb") as f:
        if bundle and os.path.exists(bundle):
            with open(bundle, "rb") as system:
                f.write(system.read())
            f.write(b"\n")
        with open(ca_path, "rb") as ca:
            f.write(ca.read())
    return cert_path, key_path, bundle_path


def pump(src: socket.socket, dst: socket.socket) -> None:
    try:
        while True:
            data = src.recv(65536)
            if not data:
                break
            dst.sendall(data)
    except OSError:
        pass
    finally:
        for s in (dst, src):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


def serve(conn: socket.socket, context: ssl.SSLContext, upstream_port: int) -> None:
    try:
        tls = context.wrap_socket(conn, server_side=True)
    except (OSError, ssl.SSLError):
        conn.close()
        return
    try:
        up = socket.create_connection(("127.0.0.1", upstream_port))
    except OSError:
        tls.close()
        return
    back = threading.Thread(target=pump, args=(up, tls), daemon=True)
    back.start()
    pump(tls, up)
    back.join()
    tls.close()
    up.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0])
    parser.add_argument("--upstream-port", type=int, required=True)
    parser.add_argument("--bundle", default="/etc/ssl/certs/ca-certificates.crt")
    args = parser.parse_args()
    directory = tempfile.mkdtemp(prefix="fleet-tls-")
    cert, key, bundle = make_certs(directory, args.bundle)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]

    def watch_stdin() -> None:
        try:
            while os.read(0, 65536):
                pass
        except OSError:
            pass
        os._exit(0)

    threading.Thread(target=watch_stdin, daemon=True).start()
    sys.stdout.write(f"READY {port} {bundle}\n")
    sys.stdout.flush()
    while True:
        conn, _ = listener.accept()
        threading.Thread(target=serve, args=(conn, context, args.upstream_port), daemon=True).start()


if __name__ == "__main__":
    main()
