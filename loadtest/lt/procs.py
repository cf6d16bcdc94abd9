"""The processes a run starts (normd, the demo app, oha): each is registered so cleanup()
can end it by pid, pinned to its core, waited for until ready, and stopped."""

from __future__ import annotations

import os
import signal
import subprocess
import time

from .httpclient import free_port, http
from .settings import APP_DIR, APP_SCHEMA, CONFIG, REPO, SERVER_CPU

_children: list[subprocess.Popen] = []


def spawn(cmd: list[str], **popen_args) -> subprocess.Popen:
    """Popen, registered for cleanup()."""
    p = subprocess.Popen(cmd, **popen_args)
    _children.append(p)
    return p


def cleanup() -> None:
    """Ends every process this script started (by pid, never by name)."""
    for p in _children:
        if p.poll() is None:
            try:
                p.send_signal(signal.SIGKILL)
                p.wait(timeout=5)
            except Exception:
                pass


def pinned(ctx, cpu: str, cmd: list[str]) -> list[str]:
    return (["taskset", "-c", cpu] if ctx.pin else []) + cmd


def terminate(p: subprocess.Popen | None) -> None:
    """SIGTERM, up to 10 s for a clean exit, then SIGKILL."""
    if p and p.poll() is None:
        p.send_signal(signal.SIGTERM)
        try:
            p.wait(timeout=10)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


def wait_until_ok(proc: subprocess.Popen, target, path: str, timeout: float, interval: float,
                  what: str, log_path) -> None:
    """Polls GET `path` until it answers 200; raises if `proc` exits or `timeout` passes."""
    deadline = time.perf_counter() + timeout
    while True:
        try:
            if http(target, "GET", path, timeout=1.0)[0] == 200:
                return
        except (OSError, ValueError, IndexError):
            pass
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited with {proc.returncode}; see {log_path}")
        if time.perf_counter() > deadline:
            raise RuntimeError(f"{what} not ready after {timeout}s; see {log_path}")
        time.sleep(interval)


class Normd:
    """One `normd serve` with the bench config, on a Unix socket and a loopback port,
    pinned to the server core; `extra` adds arguments."""

    def __init__(self, ctx, *extra: str, name: str = "normd"):
        self.ctx = ctx
        self.sock = str(ctx.tmp / f"{name}.sock")
        self.port = free_port()
        self.extra = list(extra)
        self.err_path = ctx.tmp / f"{name}.stderr.log"
        self.proc: subprocess.Popen | None = None

    @property
    def args(self) -> list[str]:
        return [
            "serve", "--config", str(CONFIG), "--schemas", str(REPO / "schemas"),
            "--socket", self.sock, "--listen", f"127.0.0.1:{self.port}",
            "--workers", "1", "--memory-limit", "256Mi",
            "--drain-delay-ms", "0", "--shutdown-timeout-ms", "5000",
            *self.ctx.normd_args, *self.extra,
        ]

    def cmdline(self) -> str:
        return " ".join(["normd"] + self.args).replace(str(REPO) + "/", "")

    def start(self, timeout: float = 10.0) -> float:
        """Spawns normd pinned to the server core; returns seconds from spawn to the
        first 200 from GET /readyz on the Unix socket (polled tightly)."""
        if os.path.exists(self.sock):
            os.unlink(self.sock)
        err = open(self.err_path, "ab")
        t0 = time.perf_counter()
        self.proc = spawn(pinned(self.ctx, SERVER_CPU, [self.ctx.normd] + self.args),
                          stdout=subprocess.DEVNULL, stderr=err, stdin=subprocess.DEVNULL)
        err.close()
        wait_until_ok(self.proc, ("unix", self.sock), "/readyz", timeout, 0.0002, "normd", self.err_path)
        return time.perf_counter() - t0

    @property
    def pid(self) -> int:
        return self.proc.pid

    def metrics(self) -> str:
        try:
            return http(("unix", self.sock), "GET", "/metrics")[1].decode()
        except OSError:
            return ""

    def stop(self) -> None:
        terminate(self.proc)

    def __enter__(self):
        self.start()
        return self

    def __exit__(self, *exc):
        self.stop()


class DemoApp:
    """The demo app (`node server.js` in loadtest/app) at one ROLLOUT, on a loopback port,
    calling the normd at `normd_sock`; pinned to ctx.app_cpu, ready once /healthz says 200."""

    def __init__(self, ctx, normd_sock: str, rollout: int, tag: str):
        self.ctx, self.normd_sock, self.rollout = ctx, normd_sock, rollout
        self.port = free_port()
        self.log_path = ctx.tmp / f"{tag}.log"
        self.proc: subprocess.Popen | None = None

    @property
    def target(self):
        return ("tcp", self.port)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def env(self) -> dict:
        env = dict(os.environ)
        env.update({
            "PORT": str(self.port), "SCHEMA": str(APP_SCHEMA), "NORMD_SOCKET": self.normd_sock,
            "ROLLOUT": str(self.rollout), "NORMD_PROFILE": "bench", "NORMD_DEADLINE_MS": "20",
        })
        return env

    def __enter__(self):
        err = open(self.log_path, "ab")
        self.proc = spawn(pinned(self.ctx, self.ctx.app_cpu, ["node", "server.js"]), cwd=APP_DIR,
                          env=self.env(), stdout=err, stderr=err, stdin=subprocess.DEVNULL)
        err.close()
        try:
            wait_until_ok(self.proc, self.target, "/healthz", 15, 0.02, "demo app", self.log_path)
        except BaseException:
            terminate(self.proc)
            raise
        return self

    def __exit__(self, *exc):
        terminate(self.proc)
