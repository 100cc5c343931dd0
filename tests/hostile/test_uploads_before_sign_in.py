"""Issue 23, finding 6: nothing heavy is reachable before sign-in.

Streamlit keeps a file PUT to ``/_stcore/upload_file/<session>/<file>`` in the server's memory
for any live session; a visitor still on the password page sent 6 x 200 MiB (+1.26 GB). With a
password set, ``ui.upload_gate.UploadGate`` (installed by app.py) answers 403 before the body
is read, unless the session passed the gate.
"""

import asyncio
import http.client
import os
import time
import urllib.parse

import pytest
from live_app import streamlit_server

from ui import access, upload_gate


def call(gate: upload_gate.UploadGate, method: str, path: str, body: bytes = b"x" * 1024) -> tuple[int, bytes, bool]:
    """(status, body, whether the body was read) for one request through the middleware."""
    sent, read = [], []

    async def downstream(scope, receive, send):
        await receive()
        read.append(True)
        await send({"type": "http.response.start", "status": 204, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    async def receive():
        read.append(True)
        return {"type": "http.request", "body": body, "more_body": False}

    async def send(message):
        sent.append(message)

    gate.app = downstream
    scope = {"type": "http", "method": method, "path": path, "headers": [], "query_string": b""}
    asyncio.run(gate(scope, receive, send))
    status = next(m["status"] for m in sent if m["type"] == "http.response.start")
    return status, b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body"), bool(read)


@pytest.fixture
def gate(monkeypatch):
    monkeypatch.setenv("TL_PASSWORD", "correct horse")
    monkeypatch.setattr(access, "_LET_IN", set())
    return upload_gate.UploadGate(None)


def test_an_upload_before_the_password_is_refused_before_its_body_is_read(gate):
    status, body, read = call(gate, "PUT", "/_stcore/upload_file/abc123/file1")
    assert (status, read) == (403, False)
    assert b"once you have signed in" in body
    status, _, read = call(gate, "PUT", "/base/_stcore/upload_file/abc123/file1")  # under a base URL too
    assert (status, read) == (403, False)


def test_a_session_past_the_gate_uploads_and_other_requests_pass(gate):
    access._LET_IN.add("abc123")
    assert call(gate, "PUT", "/_stcore/upload_file/abc123/file1")[:1] == (204,)
    assert call(gate, "PUT", "/_stcore/upload_file/other/file1")[0] == 403  # another session still waits
    assert call(gate, "GET", "/_stcore/health")[0] == 204
    assert call(gate, "DELETE", "/_stcore/upload_file/other/file1")[0] == 204  # frees memory: harmless


def test_without_a_password_every_session_uploads(monkeypatch):
    monkeypatch.delenv("TL_PASSWORD", raising=False)
    monkeypatch.setattr(access, "_secret", lambda key: None)
    assert call(upload_gate.UploadGate(None), "PUT", "/_stcore/upload_file/abc123/file1")[0] == 204


def _rss(pid: int) -> int:
    with open(f"/proc/{pid}/statm") as handle:
        return int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _server_pid(port: int) -> int:
    """The process listening on 127.0.0.1:port (the streamlit server)."""
    inode = None
    for line in open("/proc/net/tcp").read().splitlines()[1:]:
        fields = line.split()
        if fields[1].endswith(f":{port:04X}") and fields[3] == "0A":
            inode = fields[9]
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            if any(os.readlink(f"/proc/{pid}/fd/{fd}") == f"socket:[{inode}]" for fd in os.listdir(f"/proc/{pid}/fd")):
                return int(pid)
        except OSError:
            continue
    raise AssertionError(f"nothing listens on port {port}")


def _upload(port: int, session: str, token: str, n: int, size: int) -> tuple[int, str]:
    """PUT ``size`` bytes as Streamlit's client does (multipart, XSRF cookie and header): (status, body)."""
    boundary = "tl-boundary"
    head = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"f{n}.bin\"\r\n"
            "Content-Type: application/octet-stream\r\n\r\n").encode()
    tail = f"\r\n--{boundary}--\r\n".encode()
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    connection.putrequest("PUT", f"/_stcore/upload_file/{session}/file{n}")
    connection.putheader("Content-Type", f"multipart/form-data; boundary={boundary}")
    connection.putheader("Content-Length", str(len(head) + size + len(tail)))
    connection.putheader("Cookie", f"_streamlit_xsrf={token}")
    connection.putheader("X-Xsrftoken", token)
    connection.endheaders()
    chunk = os.urandom(1 << 20)
    try:
        connection.send(head)
        for _ in range(size >> 20):
            connection.send(chunk)
        connection.send(tail)
    except OSError:
        pass  # the server answered and closed before the body was sent: what the gate does
    response = connection.getresponse()
    try:
        return response.status, response.read().decode(errors="replace")
    finally:
        connection.close()


async def _attack(url: str, uploads: int, size: int) -> list[tuple[int, str]]:
    """Open a live session on the password page (a websocket, as a browser does), then upload."""
    import websockets
    from streamlit.proto.BackMsg_pb2 import BackMsg
    from streamlit.proto.ForwardMsg_pb2 import ForwardMsg
    from streamlit.web.server.starlette.starlette_app_utils import generate_xsrf_token_string

    token = generate_xsrf_token_string()
    stream = url.replace("http://", "ws://") + "/_stcore/stream"
    async with websockets.connect(stream, subprotocols=["streamlit", token],
                                  additional_headers={"Cookie": f"_streamlit_xsrf={token}"}) as socket:
        rerun = BackMsg()
        rerun.rerun_script.query_string = ""
        await socket.send(rerun.SerializeToString())
        session = ""
        while not session:
            message = ForwardMsg()
            message.ParseFromString(await socket.recv())
            if message.WhichOneof("type") == "new_session":
                session = message.new_session.initialize.session_id
        port = urllib.parse.urlsplit(url).port
        return [await asyncio.to_thread(_upload, port, session, token, n, size) for n in range(uploads)]


@pytest.mark.slow
def test_a_real_server_with_a_password_keeps_six_200_mib_uploads_out_of_memory(tmp_path):
    """The finding's attack on a real server, from a live session on the password page: every
    upload is refused and the server's memory stays flat (without the gate: +1.26 GB)."""
    env = {**os.environ, "TL_PASSWORD": "correct horse", "TL_DATA_DIR": str(tmp_path / "data")}
    with streamlit_server(tmp_path / "server.log", env=env) as url:
        pid = _server_pid(urllib.parse.urlsplit(url).port)
        before = _rss(pid)
        answers = asyncio.run(_attack(url, uploads=6, size=200 << 20))
        time.sleep(1)
        grew = _rss(pid) - before
    assert [status for status, _ in answers] == [403] * 6, answers
    assert all(upload_gate.REFUSED in text for _, text in answers)
    assert grew < 64 << 20, f"the server grew by {grew / 2**20:.0f} MiB"
