"""Fixtures of the interoperability tests: a real `temper serve` (the release binary, the real
model store) and a scripted upstream that speaks OpenAI's API, for the gateway tests."""

import json
import os
import subprocess
import threading
import time
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import openai
import pytest

ROOT = Path(__file__).resolve().parents[4]
BINARY = Path(os.environ.get("TEMPER_BIN", ROOT / "target" / "release" / "temper"))
MODEL = "smollm2-135m-instruct"
UPSTREAM_KEY_ENV = "TEMPER_INTEROP_UPSTREAM_KEY"


class Upstream(BaseHTTPRequestHandler):
    """Answers chat completions as OpenAI would, streamed: a tool call when tools are offered,
    JSON when a JSON format is asked for. It records every request body it receives."""

    received: list = []

    def log_message(self, *args):
        pass

    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        Upstream.received.append({"path": self.path, "auth": self.headers.get("Authorization"), "body": body})
        head = {"id": "up-1", "object": "chat.completion.chunk", "created": 0, "model": "upstream-model"}
        if body.get("tools"):
            chunks = [
                {"index": 0, "delta": {"role": "assistant", "content": None, "tool_calls": [
                    {"index": 0, "id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": ""}}]},
                 "finish_reason": None},
                {"index": 0, "delta": {"tool_calls": [{"index": 0, "function": {"arguments": "{\"city\": \"Paris\"}"}}]},
                 "finish_reason": None},
                {"index": 0, "delta": {}, "finish_reason": "tool_calls"},
            ]
        else:
            chunks = [
                {"index": 0, "delta": {"role": "assistant", "content": "{\"capital\": "}, "finish_reason": None},
                {"index": 0, "delta": {"content": "\"Paris\"}"}, "finish_reason": None},
                {"index": 0, "delta": {}, "finish_reason": "stop"},
            ]
        events = [dict(head, choices=[c]) for c in chunks]
        events.append(dict(head, choices=[], usage={"prompt_tokens": 1000, "completion_tokens": 500, "total_tokens": 1500}))
        payload = "".join(f"data: {json.dumps(e)}\n\n" for e in events) + "data: [DONE]\n\n"
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload.encode())


@pytest.fixture(scope="session")
def upstream():
    server = ThreadingHTTPServer(("127.0.0.1", 0), Upstream)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/v1"
    server.shutdown()


def start_server(workdir: Path, *args: str):
    """`temper serve --port 0 ARGS` in `workdir`; returns the process and its base URL once it
    has printed where it listens and reports ready."""
    assert BINARY.is_file(), f"{BINARY} is missing: build it with `cargo build --release -p temper-cli`"
    env = dict(os.environ, **{UPSTREAM_KEY_ENV: "sk-upstream"})
    env.pop("TEMPER_API_KEY", None)
    process = subprocess.Popen(
        [str(BINARY), "serve", "--port", "0", "--parallel", "4", *args],
        cwd=workdir, env=env, stderr=subprocess.PIPE, text=True,
    )
    for line in process.stderr:
        if "listening on " in line:
            base = line.split("listening on ")[1].strip()
            break
    else:
        raise RuntimeError(f"temper serve exited with {process.wait()} before listening")
    # Keep reading stderr so the server never blocks on a full pipe.
    threading.Thread(target=lambda: [None for _ in process.stderr], daemon=True).start()
    for _ in range(600):
        try:
            with urllib.request.urlopen(f"{base}/health", timeout=1) as response:
                if response.status == 200:
                    return process, base
        except OSError:
            pass
        time.sleep(0.1)
    raise RuntimeError("temper serve did not become ready in 60 s")


def stop_server(process):
    process.terminate()
    assert process.wait(timeout=30) == 0, "temper serve ends cleanly on SIGTERM"


@pytest.fixture(scope="session")
def server(tmp_path_factory, upstream):
    """A keyless server on loopback, with a profile `gateway` that forwards to the upstream."""
    workdir = tmp_path_factory.mktemp("serve")
    (workdir / "temper.toml").write_text(
        "[models.gateway]\n"
        'backend = "openai"\n'
        'model = "upstream-model"\n'
        f'base_url = "{upstream}"\n'
        f'api_key_env = "{UPSTREAM_KEY_ENV}"\n'
        "input_price_per_mtok = 1.0\n"
        "output_price_per_mtok = 2.0\n"
    )
    process, base = start_server(workdir, "--model", MODEL)
    yield base
    stop_server(process)


@pytest.fixture(scope="session")
def client(server):
    return openai.OpenAI(base_url=f"{server}/v1", api_key="unused", max_retries=0)


@pytest.fixture(scope="session")
def keyed_server(tmp_path_factory):
    """A server that demands the key sk-interop."""
    process, base = start_server(tmp_path_factory.mktemp("keyed"), "--api-key", "sk-interop", "--model", MODEL)
    yield base
    stop_server(process)
