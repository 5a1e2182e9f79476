"""Re-run issue 17's hostile-client probes against a real ``edgekit serve`` on 127.0.0.1 and print figures.

Each probe class: what a careless or hostile client does, and what the server answered, how fast
/v2/health/ready still answered meanwhile, and the server's memory (VmRSS / peak VmHWM).

    python benchmarks/serve_hostile.py                     # every probe class
    python benchmarks/serve_hostile.py --only slow-headers,json-60mb --json out.json

Traffic goes to 127.0.0.1 only; every loop is bounded in count and time. The model is a tiny
hand-built ONNX image classifier (no TensorFlow), so the figures are the server's own costs.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import os
import re
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

READY = re.compile(r"ready (http://\S+)")


def image_onnx(path: Path) -> Path:
    """[N,32,32,3] float → [N,3] softmax of the per-channel means, with an image-preprocessing sidecar."""
    import onnx
    from onnx import TensorProto, helper

    from edgekit.artifact import ArtifactMeta, write_meta

    x = helper.make_tensor_value_info("image", TensorProto.FLOAT, ["N", 32, 32, 3])
    y = helper.make_tensor_value_info("scores", TensorProto.FLOAT, ["N", 3])
    axes = helper.make_tensor("axes", TensorProto.INT64, [2], [1, 2])
    g = helper.make_graph([helper.make_node("ReduceMean", ["image", "axes"], ["m"], keepdims=0),
                           helper.make_node("Softmax", ["m"], ["scores"], axis=1)],
                          "img", [x], [y], initializer=[axes])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 18)])
    m.ir_version = 8
    onnx.save(m, path)
    write_meta(path, ArtifactMeta(format="onnx", task="image-classification", labels=["r", "g", "b"],
                                  preprocessing={"type": "image", "size": [32, 32], "channels": 3,
                                                 "mean": 0.0, "scale": 1 / 255, "layout": "NHWC"}))
    return path


class Server:
    def __init__(self, model: Path, args: list[str], log: Path):
        cmd = [sys.executable, "-c", "from edgekit.cli import main; main()", "serve", f"img={model}",
               "--host", "127.0.0.1", "--port", "0", *args]
        self.log = log
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=open(log, "w"), text=True,
                                     env={**os.environ, "PYTHONUNBUFFERED": "1"})
        line = self.proc.stdout.readline()
        m = READY.search(line)
        if not m:
            self.proc.kill()
            raise SystemExit(f"server did not start: {line!r}\n{log.read_text()[-2000:]}")
        self.url = m.group(1)
        host, port = self.url.removeprefix("http://").rsplit(":", 1)
        self.host, self.port = host, int(port)

    def mem_mb(self, field="VmRSS") -> float:
        for line in open(f"/proc/{self.proc.pid}/status"):
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
        return float("nan")

    def stop(self) -> int:
        self.proc.terminate()
        try:
            return self.proc.wait(40)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait()


def request(host, port, raw: bytes, timeout=30.0) -> tuple[int | None, bytes, float]:
    """One request on a fresh connection: (status or None, body, seconds). The body is sent from a thread
    while the answer is read, so an early answer (413, 431) is seen even if the server stops reading."""
    import threading

    t0 = time.perf_counter()
    buf = b""
    try:
        with socket.create_connection((host, port), timeout=timeout) as s:
            def send():
                try:
                    s.sendall(raw)
                except OSError:
                    pass

            th = threading.Thread(target=send, daemon=True)
            th.start()
            while True:
                try:
                    chunk = s.recv(65536)
                except OSError:
                    break
                if not chunk:
                    break
                buf += chunk
                while buf.startswith(b"HTTP/1.1 1") and b"\r\n\r\n" in buf:  # interim (100 Continue)
                    buf = buf.partition(b"\r\n\r\n")[2]
                head, sep, body = buf.partition(b"\r\n\r\n")
                if sep:
                    m = re.search(rb"content-length: *(\d+)", head, re.I)
                    if m and len(body) >= int(m.group(1)):
                        break
    except OSError:
        pass
    if not buf.startswith(b"HTTP/"):
        return None, buf, time.perf_counter() - t0
    return int(buf.split()[1]), buf.partition(b"\r\n\r\n")[2], time.perf_counter() - t0


def post(path: str, body: bytes, ctype="application/json", extra: str = "") -> bytes:
    return (f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: {ctype}\r\nContent-Length: {len(body)}\r\n"
            f"Connection: close\r\n{extra}\r\n").encode() + body


HEALTH = b"GET /v2/health/ready HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
# A legitimate request: one 32x32 image as JSON tensors; the answer is checked against the model's maths.
_X = np.linspace(0, 1, 32 * 32 * 3, dtype=np.float32).reshape(1, 32, 32, 3)
INFER = post("/v2/models/img/infer", json.dumps({"inputs": [
    {"name": "image", "shape": [1, 32, 32, 3], "datatype": "FP32", "data": _X.ravel().tolist()}]}).encode())


def infer_ok(status, body) -> bool:
    if status != 200:
        return False
    m = _X.mean(axis=(1, 2))[0]
    want = np.exp(m) / np.exp(m).sum()
    got = np.asarray(json.loads(body)["outputs"][0]["data"])
    return bool(np.allclose(got, want, atol=1e-5))


async def _poll(srv, seconds: float, every: float = 0.25) -> list[tuple]:
    """Every ``every`` s: a health check and a real inference on fresh connections: (status, s, infer ok)."""
    loop = asyncio.get_running_loop()
    out, t_end = [], time.monotonic() + seconds
    while time.monotonic() < t_end:
        st, _, t = await loop.run_in_executor(None, request, srv.host, srv.port, HEALTH, 10)
        ist, ibody, _ = await loop.run_in_executor(None, request, srv.host, srv.port, INFER, 10)
        out.append((st, t, infer_ok(ist, ibody)))
        await asyncio.sleep(every)
    return out


def _health_summary(polls) -> dict:
    ok = [t for s, t, _ in polls if s == 200]
    return {"health_polls": len(polls), "health_200": len(ok),
            "health_codes": sorted({str(s) for s, _, _ in polls}),
            "health_p50_ms": round(statistics.median(ok) * 1000, 1) if ok else None,
            "health_max_ms": round(max(ok) * 1000, 1) if ok else None,
            "infer_correct": sum(1 for *_, good in polls if good)}


async def _slow_sockets(srv, n_header: int, n_body: int, seconds: float, interval: float, stagger: float = 0.0) -> dict:
    """n_header sockets dribble a request head one byte per ``interval``; n_body send a full head that
    announces 5,000 bytes and then dribble the body; socket i connects ``i * stagger`` s after the first (so
    each has sent its head before the next arrives). Returns when each one was closed by the server."""
    head = b"POST /v2/models/img/infer HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nX-Pad: " + b"a" * 4000
    body_head = b"POST /v2/models/img/infer HTTP/1.1\r\nHost: x\r\nContent-Length: 5000\r\n\r\n"
    closed: list[float] = []
    t0 = time.monotonic()

    async def one(kind: str, i: int):
        await asyncio.sleep(i * stagger)
        try:
            r, w = await asyncio.open_connection(srv.host, srv.port)
        except OSError:
            closed.append(0.0)
            return
        data = head if kind == "h" else b"{" * 5000
        if kind == "b":
            w.write(body_head)
        i = 0
        try:
            while time.monotonic() - t0 < seconds and i < len(data):
                w.write(data[i:i + 1])
                await w.drain()
                i += 1
                try:  # the server closing (EOF) or answering ends the dribble
                    got = await asyncio.wait_for(r.read(1024), interval)
                    if got == b"" or got:
                        closed.append(time.monotonic() - t0)
                        return
                except asyncio.TimeoutError:
                    pass
        except (ConnectionError, OSError):
            closed.append(time.monotonic() - t0)
            return
        finally:
            w.close()

    tasks = [one("h" if i < n_header else "b", i) for i in range(n_header + n_body)]
    polls, _ = await asyncio.gather(_poll(srv, seconds), asyncio.gather(*tasks))
    return {"slow_sockets": n_header + n_body, "closed_by_server": len(closed),
            "closed_after_s_min": round(min(closed), 1) if closed else None,
            "closed_after_s_median": round(statistics.median(closed), 1) if closed else None,
            "closed_after_s_max": round(max(closed), 1) if closed else None, **_health_summary(polls)}


def png_bytes(h: int, w: int) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (w, h), (10, 20, 30)).save(buf, format="PNG")
    return buf.getvalue()


def png_tall(w: int, h: int) -> bytes:
    """A valid black RGB PNG of w x h built row by row (1 x 20,000,000 is ~80 KB; Pillow would need 80 MB)."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    z, row, parts = zlib.compressobj(9), b"\0" * (1 + 3 * w), []
    block = row * max(1, (1 << 20) // len(row))
    rows_per_block = len(block) // len(row)
    for _ in range(h // rows_per_block):
        parts.append(z.compress(block))
    parts.append(z.compress(row * (h % rows_per_block)) + z.flush())
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", b"".join(parts)) + chunk(b"IEND", b""))


def probe(name: str, model: Path, logs: Path, seconds: float, server_args: list[str] | None = None) -> dict:
    """Run one probe class against a fresh server; ``server_args`` replaces the probe's own flags."""
    args = server_args if server_args is not None else {"slow-headers": ["--max-connections", "60"],
                                                        "slow-body": ["--max-connections", "60"]}.get(name, [])
    srv = Server(model, args, logs / f"{name}.log")
    try:
        base = srv.mem_mb()
        res: dict = {"probe": name, "server_args": " ".join(args)}
        if name == "slow-headers":  # 70 sockets, headers one byte at a time, --max-connections 60
            res.update(asyncio.run(_slow_sockets(srv, 70, 0, seconds, 0.2)))
        elif name == "slow-body":  # 80 sockets: whole headers, then a body byte every 0.5 s; --max-connections 60
            res.update(asyncio.run(_slow_sockets(srv, 0, 80, seconds, 0.5, stagger=0.01)))
        elif name == "slow-many":  # 300 slow-header + 200 slow-body sockets at defaults
            res.update(asyncio.run(_slow_sockets(srv, 300, 200, seconds, 0.5)))
        elif name == "body-never-sent":  # a body announced at 5,000 bytes and never sent
            st, body, t = request(srv.host, srv.port, b"POST /v2/models/img/infer HTTP/1.1\r\nHost: x\r\n"
                                  b"Content-Length: 5000\r\n\r\n", timeout=seconds)
            res.update(status=st, seconds=round(t, 1), body=body[:120].decode(errors="replace"))
        elif name in ("json-60mb", "json-max"):  # ~60 MB JSON (under the 64 MB body limit); a valid one at the JSON limit
            mb = 60 if name == "json-60mb" else 8
            rows = mb * 1024 * 1024 // 4 // 3072 - (0 if name == "json-60mb" else 1)
            x = (b"0.5," * (rows * 3072 - 1)) + b"0.5"
            body = b'{"inputs":[{"name":"image","shape":[%d,32,32,3],"datatype":"FP32","data":[' % rows + x + b"]}]}"

            async def both():
                loop = asyncio.get_running_loop()
                fut = loop.run_in_executor(None, request, srv.host, srv.port, post("/v2/models/img/infer", body), 120)
                polls = await _poll(srv, 6.0)
                return await fut, polls

            (st, out, t), polls = asyncio.run(both())
            res.update(status=st, seconds=round(t, 2), body=out[:120].decode(errors="replace"),
                       rss_before_mb=round(base), peak_rss_mb=round(srv.mem_mb("VmHWM")), **_health_summary(polls))
        elif name == "headers-60mb":  # 60 MB of request headers with --max-body-mb 4
            pad = b"".join(b"X-Pad-%d: %s\r\n" % (i, b"a" * 1000) for i in range(60 * 1024))
            raw = b"GET /v2/health/ready HTTP/1.1\r\nHost: x\r\n" + pad + b"\r\n"
            st, out, t = request(srv.host, srv.port, raw, timeout=60)
            res.update(status=st, seconds=round(t, 2), peak_rss_mb=round(srv.mem_mb("VmHWM")),
                       rss_before_mb=round(base), log_write_after_eof="Cannot call write()" in srv.log.read_text())
        elif name in ("png-9000", "png-at-limit", "png-1x20m"):  # four 9000x9000 PNGs to classify; four of
            # 5000x5000 (25 MP); four of 1 x 20,000,000 (20 MP but 38-80 KB: the resampler's weights were the bomb)
            png = {"png-9000": lambda: png_bytes(9000, 9000), "png-at-limit": lambda: png_bytes(5000, 5000),
                   "png-1x20m": lambda: png_tall(1, 20_000_000)}[name]()

            async def four():
                loop = asyncio.get_running_loop()
                futs = [loop.run_in_executor(None, request, srv.host, srv.port,
                                             post("/v2/models/img/classify", png, "image/png"), 120) for _ in range(4)]
                polls = await _poll(srv, 5.0)
                return await asyncio.gather(*futs), polls

            outs, polls = asyncio.run(four())
            res.update(png_kb=len(png) // 1024, statuses=[o[0] for o in outs],
                       body=outs[0][1][:160].decode(errors="replace"), rss_before_mb=round(base),
                       peak_rss_mb=round(srv.mem_mb("VmHWM")), **_health_summary(polls))
        elif name == "deep-json":  # 100k-deep nesting
            body = b'{"inputs":' + b"[" * 100_000 + b"]" * 100_000 + b"}"
            st, out, t = request(srv.host, srv.port, post("/v2/models/img/infer", body))
            res.update(status=st, body=out[:160].decode(errors="replace"))
        elif name == "nan-input":  # NaN / Infinity literals in JSON data
            data = ", ".join(["NaN", "Infinity", "-Infinity"] + ["0.5"] * (32 * 32 * 3 - 3))
            body = ('{"inputs":[{"name":"image","shape":[1,32,32,3],"datatype":"FP32","data":[%s]}]}' % data).encode()
            st, out, t = request(srv.host, srv.port, post("/v2/models/img/infer", body))
            try:
                json.loads(out, parse_constant=lambda c: (_ for _ in ()).throw(ValueError(c)))
                strict = True
            except ValueError:
                strict = False
            res.update(status=st, body=out[:160].decode(errors="replace"), strict_json=strict)
        elif name == "drain-stalled":  # SIGTERM while a client has sent half its body
            s = socket.create_connection((srv.host, srv.port))
            s.sendall(b"POST /v2/models/img/infer HTTP/1.1\r\nHost: x\r\nContent-Length: 5000\r\n\r\n{")
            time.sleep(0.3)
            t0 = time.perf_counter()
            srv.proc.terminate()
            s.settimeout(60)
            try:
                got = s.recv(4096)
            except OSError:
                got = b""
            rc = srv.proc.wait(60)
            log = srv.log.read_text()
            res.update(status=int(got.split()[1]) if got.startswith(b"HTTP/") else None,
                       answered_after_s=round(time.perf_counter() - t0, 2), exit_code=rc,
                       traceback_in_log="Traceback" in log, cancelled_in_log="CancelledError" in log)
        return res
    finally:
        if srv.proc.poll() is None:
            srv.stop()


PROBES = ["slow-headers", "slow-body", "slow-many", "body-never-sent", "json-60mb", "json-max", "headers-60mb",
          "png-9000", "png-at-limit", "png-1x20m", "deep-json", "nan-input", "drain-stalled"]


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--only", default=",".join(PROBES), help="comma-separated probe classes: " + ", ".join(PROBES))
    ap.add_argument("--seconds", type=float, default=20.0, help="how long the slow-socket probes dribble")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args(argv)
    tmp = Path(tempfile.mkdtemp(prefix="edgekit-hostile-"))
    model = image_onnx(tmp / "img.onnx")
    results = []
    for name in args.only.split(","):
        r = probe(name.strip(), model, tmp, args.seconds)
        print(json.dumps(r), flush=True)
        results.append(r)
    if args.json:
        args.json.write_text(json.dumps(results, indent=1) + "\n")


if __name__ == "__main__":
    main()
