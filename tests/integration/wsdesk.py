"""A minimal HTTP + WebSocket (RFC 6455) backend on a Unix socket, and a
WebSocket client, for the front door's routing tests and bench/instances.

Not a desktop: the real one is xpra (tests/integration/test_e2e.py drives it
through the front door with headless Chromium). This one answers
  GET /            200 "desktop NAME\\n"  (NAME tells which host and instance)
  GET / (Upgrade: websocket)  101, then per message:
      text "stream N C"  N bytes in binary messages of C bytes, then text "done"
      anything else      echoed back as it came
Python's standard library only (Debian has no websockets module here).
"""
import base64
import hashlib
import os
import socket
import socketserver
import ssl
import struct
import threading

GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC11B65"


def accept_key(key):
    return base64.b64encode(hashlib.sha1(key.encode() + GUID).digest()).decode()


def read_head(sock):
    """Bytes up to the end of the HTTP head; (head, rest)."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            raise EOFError("connection closed before the end of the HTTP head")
        data += chunk
        if len(data) > 65536:
            raise ValueError("HTTP head over 64 KiB")
    head, rest = data.split(b"\r\n\r\n", 1)
    return head.decode("latin-1"), rest


def headers_of(head):
    lines = head.split("\r\n")
    out = {}
    for line in lines[1:]:
        if ":" in line:
            k, v = line.split(":", 1)
            out[k.strip().lower()] = v.strip()
    return lines[0], out


class Conn:
    """Frames over a connected socket (plain, Unix or TLS). Clients mask."""

    def __init__(self, sock, rest=b"", mask=True):
        self.sock, self.buf, self.mask = sock, bytearray(rest), mask

    def _need(self, n):
        """n bytes: what is buffered, then straight into a buffer of size n
        (recv_into; no copying a growing buffer again per TLS record)."""
        if len(self.buf) >= n:
            out = bytes(self.buf[:n])
            del self.buf[:n]
            return out
        out = bytearray(n)
        have = len(self.buf)
        out[:have] = self.buf
        self.buf.clear()
        view = memoryview(out)
        while have < n:
            got = self.sock.recv_into(view[have:], n - have)
            if not got:
                raise EOFError("connection closed")
            have += got
        return bytes(out)

    def send(self, payload, opcode=None):
        if isinstance(payload, str):
            payload, opcode = payload.encode(), opcode or 1
        opcode = opcode or 2
        n = len(payload)
        head = bytes([0x80 | opcode])
        m = 0x80 if self.mask else 0
        if n < 126:
            head += bytes([m | n])
        elif n < 65536:
            head += bytes([m | 126]) + struct.pack("!H", n)
        else:
            head += bytes([m | 127]) + struct.pack("!Q", n)
        if self.mask:
            key = os.urandom(4)
            # XOR with the key through one big integer: fast enough for the bench.
            k = (key * (n // 4 + 1))[:n]
            payload = (int.from_bytes(payload, "big") ^ int.from_bytes(k, "big")).to_bytes(n, "big") if n else b""
            head += key
        self.sock.sendall(head + payload)

    def recv(self):
        """(opcode, payload), or None when the peer closed (EOF or a close frame)."""
        try:
            b0, b1 = self._need(2)
            n = b1 & 0x7F
            if n == 126:
                n = struct.unpack("!H", self._need(2))[0]
            elif n == 127:
                n = struct.unpack("!Q", self._need(8))[0]
            key = self._need(4) if b1 & 0x80 else None
            payload = self._need(n)
        except (EOFError, ConnectionError, ssl.SSLError, OSError):
            return None
        if key and n:
            k = (key * (n // 4 + 1))[:n]
            payload = (int.from_bytes(payload, "big") ^ int.from_bytes(k, "big")).to_bytes(n, "big")
        if b0 & 0x0F == 8:
            return None
        return b0 & 0x0F, payload

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass


class _Handler(socketserver.BaseRequestHandler):
    def handle(self):
        try:
            self.serve()
        except OSError:  # the front door closed the connection (a shutdown, a refusal)
            pass

    def serve(self):
        try:
            head, rest = read_head(self.request)
        except (EOFError, ValueError, OSError):
            return
        _, hdrs = headers_of(head)
        name = self.server.desk_name
        if hdrs.get("upgrade", "").lower() != "websocket":
            body = f"desktop {name}\n".encode()
            self.request.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: %d\r\n"
                                 b"Connection: close\r\n\r\n" % len(body) + body)
            return
        self.request.sendall(("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                              f"Sec-WebSocket-Accept: {accept_key(hdrs.get('sec-websocket-key', ''))}\r\n\r\n").encode())
        c = Conn(self.request, rest, mask=False)
        while True:
            msg = c.recv()
            if msg is None:
                return
            op, payload = msg
            if op == 1 and payload.startswith(b"stream "):
                _, total, chunk = payload.split()
                total, chunk = int(total), int(chunk)
                block = os.urandom(chunk)
                sent = 0
                while sent < total:
                    c.send(block[:min(chunk, total - sent)])
                    sent += chunk
                c.send("done")
            elif op in (1, 2):
                c.send(payload, op)


class _Server(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True


class Desk:
    """The backend on `path` (root:GID 0660, like pukaipu-run's desktop.sock),
    served by a thread of this process until stop()."""

    def __init__(self, path, name, gid=None):
        os.makedirs(os.path.dirname(path), exist_ok=True)
        if gid is not None:
            os.chown(os.path.dirname(path), 0, gid)
            os.chmod(os.path.dirname(path), 0o750)
        if os.path.exists(path):
            os.unlink(path)
        self.server = _Server(path, _Handler)
        self.server.desk_name = name
        if gid is not None:
            os.chown(path, 0, gid)
        os.chmod(path, 0o660)
        self.path = path
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def stop(self):
        self.server.shutdown()
        self.server.server_close()
        try:
            os.unlink(self.path)
        except OSError:
            pass


def tls_context(cert=None, key=None, cafile=None, tls13=True):
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    if cafile:
        ctx.load_verify_locations(cafile)
    else:
        ctx.check_hostname, ctx.verify_mode = False, ssl.CERT_NONE
    if cert:
        ctx.load_cert_chain(cert, key)
    if not tls13:
        ctx.maximum_version = ssl.TLSVersion.TLSv1_2
    return ctx


def tls_socket(addr, name, ctx, source=None, timeout=10):
    raw = socket.create_connection(addr, timeout=timeout, source_address=source)
    try:
        return ctx.wrap_socket(raw, server_hostname=name)
    except Exception:
        raw.close()
        raise


def upgrade(sock, host, origin=None, path="/"):
    """The WebSocket handshake on a connected socket: (Conn, None) after a 101,
    (None, status line) otherwise."""
    key = base64.b64encode(os.urandom(16)).decode()
    req = (f"GET {path} HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
           f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n")
    if origin:
        req += f"Origin: {origin}\r\n"
    sock.sendall((req + "\r\n").encode())
    head, rest = read_head(sock)
    status, hdrs = headers_of(head)
    if " 101 " not in status + " " or hdrs.get("sec-websocket-accept") != accept_key(key):
        return None, status
    return Conn(sock, rest), None


def http_get(sock, host, path="/"):
    """One GET with Connection: close on a connected socket: (status code, body)."""
    sock.sendall(f"GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode())
    data = b""
    while True:
        try:
            chunk = sock.recv(65536)
        except (ssl.SSLError, OSError):
            break
        if not chunk:
            break
        data += chunk
    if not data:
        return 0, b""
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split(b" ", 2)[1]), body
