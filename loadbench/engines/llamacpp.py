"""A real llama.cpp ``llama-server`` for tests and local runs, built from source.

No prebuilt binary or model can be downloaded where this project runs, so:

* :func:`build_llama_server` takes llama.cpp's sources from the
  ``llama-cpp-python`` sdist on PyPI (it vendors llama.cpp), builds only the
  ``llama-server`` target with CMake, and caches the binary;
* :func:`tiny_model_path` writes a tiny random-weight llama GGUF
  (:mod:`loadbench.engines.tiny_gguf`) that never stops before ``max_tokens``;
* :class:`LlamaServer` runs the binary on a free 127.0.0.1 port and stops it.

Command line: ``loadbench engine build|path|model|serve`` (``python -m loadbench.engines.llamacpp`` is an alias).
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import hashlib
import json
import os
import platform
import shutil
import signal
import socket
import subprocess
import sys
import tarfile
import tempfile
import time
import urllib.error
import urllib.request
import weakref
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from types import TracebackType

__all__ = [
    "LLAMA_CPP_PYTHON_VERSION",
    "TINY_MODEL_NAME",
    "LlamaServer",
    "LlamaServerError",
    "build_llama_server",
    "cache_dir",
    "find_llama_server",
    "free_port",
    "main",
    "tiny_model_path",
]

#: The llama-cpp-python release whose vendored llama.cpp is built.
LLAMA_CPP_PYTHON_VERSION = "0.3.36"

#: File name of the cached tiny model; bump the suffix when the generator changes.
TINY_MODEL_NAME = "loadbench-tiny-llama-v1.gguf"

_BINARY_NAME = "llama-server"
_ENV_BINARY = "LOADBENCH_LLAMA_SERVER"

# CMake options: a static, CPU-only server with nothing fetched at build time
# (the prebuilt web UI would be downloaded, and OpenSSL is not needed on 127.0.0.1).
_CMAKE_OPTIONS = (
    "-DCMAKE_BUILD_TYPE=Release",
    "-DBUILD_SHARED_LIBS=OFF",
    "-DLLAMA_BUILD_TESTS=OFF",
    "-DLLAMA_BUILD_EXAMPLES=OFF",
    "-DLLAMA_USE_PREBUILT_UI=OFF",
    "-DLLAMA_OPENSSL=OFF",
)


class LlamaServerError(RuntimeError):
    """llama-server could not be built, found, or started."""


# --------------------------------------------------------------------------- paths


def cache_dir() -> Path:
    """The project's cache folder (not created here).

    ``$LOADBENCH_CACHE`` if set, else ``$XDG_CACHE_HOME/loadbench``, else
    ``~/.cache/loadbench``.
    """
    if explicit := os.environ.get("LOADBENCH_CACHE"):
        return Path(explicit).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".cache"
    return base / "loadbench"


def _install_dir() -> Path:
    return cache_dir() / f"llama.cpp-{LLAMA_CPP_PYTHON_VERSION}"


def _cached_binary() -> Path:
    return _install_dir() / "bin" / _BINARY_NAME


def _host_fingerprint() -> str:
    """A short hash of the CPU architecture and feature flags.

    The build is ``GGML_NATIVE`` (tuned to the building CPU), so a cached
    binary is only trusted on a CPU with the same features; ``--version``
    alone would not catch an illegal instruction deep in a compute kernel.
    """
    flags = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith(("flags", "Features")):  # x86 / arm
                flags = " ".join(sorted(line.split(":", 1)[1].split()))
                break
    except OSError:
        pass
    return hashlib.sha256(f"{platform.machine()} {flags}".encode()).hexdigest()[:16]


def _cache_matches_host(install: Path) -> bool:
    """True if ``install/BUILD_INFO.json`` records a build for this CPU."""
    try:
        info = json.loads((install / "BUILD_INFO.json").read_text())
    except (OSError, ValueError):
        return False
    return isinstance(info, dict) and info.get("host_fingerprint") == _host_fingerprint()


def _is_executable(path: Path) -> bool:
    return path.is_file() and os.access(path, os.X_OK)


def _binary_runs(path: Path, timeout_s: float = 60.0) -> bool:
    """True if ``path --version`` exits 0 (catches a binary built for another CPU)."""
    if not _is_executable(path):
        return False
    try:
        done = subprocess.run([str(path), "--version"], capture_output=True, timeout=timeout_s, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return done.returncode == 0


def find_llama_server() -> Path | None:
    """Locate a llama-server binary without building one.

    Order: ``$LOADBENCH_LLAMA_SERVER`` (when set it is the only candidate: an
    absent file gives ``None`` rather than silently using another binary), then
    the cached build of :func:`build_llama_server` if it was built on a CPU
    like this one, then ``llama-server`` on ``PATH``. Only checks that the
    file is executable; it is not run.
    """
    if explicit := os.environ.get(_ENV_BINARY):
        path = Path(explicit).expanduser()
        return path if _is_executable(path) else None
    cached = _cached_binary()
    if _is_executable(cached) and _cache_matches_host(_install_dir()):
        return cached
    on_path = shutil.which(_BINARY_NAME)
    return Path(on_path) if on_path else None


# --------------------------------------------------------------------------- build


@contextlib.contextmanager
def _file_lock(path: Path) -> Iterator[None]:
    """Exclusive inter-process lock, so two test runs never build at once."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _run_logged(cmd: Sequence[str], *, log_file: Path, log: Callable[[str], None], cwd: Path | None = None) -> None:
    """Run ``cmd``, appending its output to ``log_file`` and passing progress
    lines (``[n/N] ...`` from ninja/make, ``-- ...`` from cmake) to ``log``.

    Raises :class:`LlamaServerError` with the output's tail on a non-zero exit.
    """
    tail: deque[str] = deque(maxlen=40)
    with open(log_file, "a") as out:
        out.write(f"$ {' '.join(cmd)}\n")
        out.flush()
        proc = subprocess.Popen(
            list(cmd),
            cwd=cwd,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            text=True,
            errors="replace",
        )
        assert proc.stdout is not None
        for line in proc.stdout:
            out.write(line)
            tail.append(line)
            if line.startswith(("[", "-- Build files", "-- Configuring done")):
                log(line.rstrip())
        returncode = proc.wait()
    if returncode != 0:
        raise LlamaServerError(
            f"command failed with exit code {returncode}: {' '.join(cmd)}\n(full log: {log_file})\n" + "".join(tail)
        )


def _download_sdist(downloads: Path, *, log_file: Path, log: Callable[[str], None]) -> Path:
    """Return the cached llama-cpp-python sdist, fetching it with pip if needed."""
    name = f"llama_cpp_python-{LLAMA_CPP_PYTHON_VERSION}.tar.gz"
    if (sdist := downloads / name).is_file():
        return sdist
    downloads.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".pip-", dir=downloads))
    try:
        log(f"downloading llama-cpp-python=={LLAMA_CPP_PYTHON_VERSION} sources with pip")
        _run_logged(
            [
                sys.executable,
                "-m",
                "pip",
                "download",
                "--no-deps",
                "--no-binary",
                ":all:",
                "--dest",
                str(staging),
                f"llama-cpp-python=={LLAMA_CPP_PYTHON_VERSION}",
            ],
            log_file=log_file,
            log=log,
        )
        found = sorted(staging.glob("llama_cpp_python-*.tar.gz"))
        if not found:
            raise LlamaServerError(f"pip downloaded no llama-cpp-python sdist into {staging}")
        os.replace(found[0], sdist)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return sdist


def _extract_llama_cpp(sdist: Path, dest: Path) -> Path:
    """Unpack ``sdist`` under ``dest``; return the vendored llama.cpp source root."""
    with tarfile.open(sdist) as archive:
        # The "data" filter refuses links or paths that escape ``dest``.
        archive.extractall(dest, filter="data")
    for candidate in sorted(dest.glob("*/vendor/llama.cpp")):
        if (candidate / "CMakeLists.txt").is_file():
            return candidate
    raise LlamaServerError(f"no vendor/llama.cpp with a CMakeLists.txt in {sdist}")


def build_llama_server(*, jobs: int | None = None, log: Callable[[str], None] = print) -> Path:
    """Build llama.cpp's ``llama-server`` once and return the cached binary's path.

    Idempotent: if ``<cache>/llama.cpp-<version>/bin/llama-server`` exists,
    was built on a CPU with the same features and ``--version`` runs, it is
    returned at once. Otherwise the llama-cpp-python sdist is fetched with
    ``pip download`` (kept in ``<cache>/downloads``), unpacked, and its
    vendored llama.cpp built with CMake (Ninja when available) using ``jobs``
    parallel jobs (default: all CPUs): about 4-9 minutes on 2 cores. The build happens in a temporary folder
    and the finished install folder is renamed into place, so an interrupted
    build never leaves a partial binary; a lock file serialises concurrent
    builders. ``log`` receives progress lines; the full output goes to
    ``<cache>/llama.cpp-<version>.build.log``.

    Raises :class:`LlamaServerError` when a step fails.
    """
    target = _cached_binary()
    install = _install_dir()
    if _cache_matches_host(install) and _binary_runs(target):
        return target
    cache = cache_dir()
    cache.mkdir(parents=True, exist_ok=True)
    with _file_lock(cache / f"{install.name}.lock"):
        # Another process may have built it while we waited for the lock.
        if _cache_matches_host(install) and _binary_runs(target):
            return target
        if shutil.which("cmake") is None:
            raise LlamaServerError("cmake is required to build llama-server (and a C++ compiler)")
        log_file = cache / f"{install.name}.build.log"
        log_file.write_text("")
        started_s = time.monotonic()
        sdist = _download_sdist(cache / "downloads", log_file=log_file, log=log)
        work = Path(tempfile.mkdtemp(prefix=f".build-{install.name}-", dir=cache))
        try:
            source = _extract_llama_cpp(sdist, work / "src")
            build = work / "build"
            generator = ["-G", "Ninja"] if shutil.which("ninja") else []
            log(f"configuring llama.cpp from {sdist.name}")
            _run_logged(
                ["cmake", "-S", str(source), "-B", str(build), *generator, *_CMAKE_OPTIONS],
                log_file=log_file,
                log=log,
            )
            n_jobs = jobs or os.cpu_count() or 1
            log(f"building {_BINARY_NAME} with {n_jobs} jobs (several minutes)")
            _run_logged(
                ["cmake", "--build", str(build), "--target", _BINARY_NAME, "-j", str(n_jobs)],
                log_file=log_file,
                log=log,
            )
            built = next((p for p in build.rglob(_BINARY_NAME) if _is_executable(p)), None)
            if built is None:
                raise LlamaServerError(f"the build produced no {_BINARY_NAME} (log: {log_file})")
            staged = work / "install"
            (staged / "bin").mkdir(parents=True)
            shutil.copy2(built, staged / "bin" / _BINARY_NAME)
            if not _binary_runs(staged / "bin" / _BINARY_NAME):
                raise LlamaServerError(f"the built {_BINARY_NAME} does not run --version")
            build_info = {
                "llama_cpp_python": LLAMA_CPP_PYTHON_VERSION,
                "cmake_options": list(_CMAKE_OPTIONS),
                "host_fingerprint": _host_fingerprint(),
                "build_s": round(time.monotonic() - started_s, 1),
            }
            (staged / "BUILD_INFO.json").write_text(json.dumps(build_info, indent=2) + "\n")
            if install.exists():  # a stale or broken install: move aside, then drop
                stale = work / "stale"
                os.replace(install, stale)
            os.replace(staged, install)
        finally:
            shutil.rmtree(work, ignore_errors=True)
        log(f"built {target} in {time.monotonic() - started_s:.0f} s")
    return target


# --------------------------------------------------------------------------- model


def tiny_model_path(vocab: str = "words") -> Path:
    """Path of the cached tiny test model, written on first use (about 1 MB).

    See :func:`loadbench.engines.tiny_gguf.write_tiny_llama_gguf` for what it
    is; the default arguments are used, but for ``vocab`` (``"words"``, or
    ``"subword"`` for a tokenizer unlike it).
    """
    from loadbench.engines.tiny_gguf import write_tiny_llama_gguf

    name = TINY_MODEL_NAME if vocab == "words" else TINY_MODEL_NAME.replace(".gguf", f"-{vocab}.gguf")
    path = cache_dir() / "models" / name
    if not path.is_file():
        path.parent.mkdir(parents=True, exist_ok=True)
        write_tiny_llama_gguf(path, vocab=vocab)  # writes to a temp name and renames: race-safe
    return path


# --------------------------------------------------------------------------- server


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that was free on ``host`` a moment ago (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def _tail(path: Path, n_lines: int = 40) -> str:
    try:
        with open(path, errors="replace") as handle:
            return "".join(deque(handle, maxlen=n_lines))
    except OSError:
        return ""


def _stop_process(proc: subprocess.Popen[bytes], grace_s: float) -> None:
    if proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=grace_s)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


class LlamaServer:
    """A running ``llama-server`` on 127.0.0.1, as a (sync or async) context manager.

    ``with LlamaServer(n_parallel=4) as server: ... server.base_url ...``

    Starts ``llama-server -m MODEL --host HOST --port PORT -np N -c CTX
    --metrics --no-webui`` (plus ``extra_args``) and waits until ``/health``
    answers 200. ``model`` defaults to :func:`tiny_model_path`, ``binary`` to
    :func:`find_llama_server`; ``port`` defaults to a free one. ``n_ctx`` is the
    total KV-cache size in tokens, which llama.cpp splits evenly over the
    ``n_parallel`` slots (``n_ctx / n_parallel`` tokens per request).
    ``threads`` (CPU threads for generation) defaults to llama.cpp's choice.

    The server's output goes to ``log_path`` (default: a temporary file, removed
    on a clean close). If it exits or is not healthy within
    ``startup_timeout_s`` seconds, :class:`LlamaServerError` carries the log's
    tail. :meth:`close` is idempotent: SIGTERM, then SIGKILL after
    ``stop_grace_s`` seconds.
    """

    def __init__(
        self,
        model: str | os.PathLike[str] | None = None,
        *,
        binary: str | os.PathLike[str] | None = None,
        host: str = "127.0.0.1",
        port: int | None = None,
        n_parallel: int = 1,
        n_ctx: int = 4096,
        threads: int | None = None,
        extra_args: Sequence[str] = (),
        startup_timeout_s: float = 120.0,
        stop_grace_s: float = 10.0,
        log_path: str | os.PathLike[str] | None = None,
    ) -> None:
        self.model_path = Path(model) if model is not None else None
        self.binary = Path(binary) if binary is not None else None
        self.host = host
        self._requested_port = port
        self.n_parallel = n_parallel
        self.n_ctx = n_ctx
        self.threads = threads
        self.extra_args = tuple(extra_args)
        self.startup_timeout_s = startup_timeout_s
        self.stop_grace_s = stop_grace_s
        self._explicit_log = log_path is not None
        self.log_path: Path | None = Path(log_path) if log_path is not None else None
        self.port: int | None = None
        #: Seconds from process start until ``/health`` answered 200.
        self.startup_s: float | None = None
        self._proc: subprocess.Popen[bytes] | None = None
        self._finalizer: weakref.finalize | None = None

    # -- public surface

    @property
    def base_url(self) -> str:
        """``http://HOST:PORT`` (no trailing slash); only valid once started."""
        if self.port is None:
            raise LlamaServerError("the server is not started")
        return f"http://{self.host}:{self.port}"

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def command(self) -> list[str]:
        """The command line :meth:`start` runs (model, binary and port resolved)."""
        assert self.binary is not None and self.model_path is not None and self.port is not None
        cmd = [
            str(self.binary),
            "-m",
            str(self.model_path),
            "--host",
            self.host,
            "--port",
            str(self.port),
            "-np",
            str(self.n_parallel),
            "-c",
            str(self.n_ctx),
            "--metrics",
            "--no-webui",
        ]
        if self.threads is not None:
            cmd += ["--threads", str(self.threads)]
        return cmd + list(self.extra_args)

    def start(self) -> LlamaServer:
        """Start the server and block until it is healthy; returns ``self``."""
        if self._proc is not None:
            raise LlamaServerError("the server was already started")
        if self.binary is None:
            self.binary = find_llama_server()
            if self.binary is None:
                raise LlamaServerError(
                    f"no llama-server binary: run `loadbench engine build` or set ${_ENV_BINARY}"
                )
        if self.model_path is None:
            self.model_path = tiny_model_path()
        if self.log_path is None:
            fd, name = tempfile.mkstemp(prefix="llama-server-", suffix=".log")
            os.close(fd)
            self.log_path = Path(name)
        # A port chosen by us can be taken between probing and binding: retry.
        attempts = 1 if self._requested_port is not None else 3
        for attempt in range(attempts):
            self.port = self._requested_port or free_port(self.host)
            try:
                self._launch_and_wait()
                return self
            except LlamaServerError:
                port_taken = "bind" in _tail(self.log_path, 10).lower()
                self._terminate()
                if not port_taken or attempt == attempts - 1:
                    raise
        raise AssertionError("unreachable")

    def close(self) -> None:
        """Stop the server (idempotent); removes an auto-created log file."""
        self._terminate()
        if self.log_path is not None and not self._explicit_log:
            self.log_path.unlink(missing_ok=True)
            self.log_path = None

    def log_tail(self, n_lines: int = 40) -> str:
        """The last ``n_lines`` lines of the server's output."""
        return _tail(self.log_path, n_lines) if self.log_path else ""

    # -- context managers

    def __enter__(self) -> LlamaServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    async def __aenter__(self) -> LlamaServer:
        import asyncio

        # Startup polls /health with blocking I/O: keep it off the event loop.
        return await asyncio.to_thread(self.start)

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        import asyncio

        await asyncio.to_thread(self.close)

    # -- internals

    def _launch_and_wait(self) -> None:
        assert self.log_path is not None
        cmd = self.command()
        with open(self.log_path, "ab") as log:
            log.write(f"$ {' '.join(cmd)}\n".encode())
            log.flush()
            started_s = time.monotonic()
            self._proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        # Never leave a server behind if the owner forgets to close it.
        self._finalizer = weakref.finalize(self, _stop_process, self._proc, self.stop_grace_s)
        deadline_s = started_s + self.startup_timeout_s
        health_url = f"{self.base_url}/health"
        while True:
            if (code := self._proc.poll()) is not None:
                raise LlamaServerError(
                    f"llama-server exited with code {code} during startup; log {self.log_path}:\n{self.log_tail()}"
                )
            if _health_ok(health_url):
                self.startup_s = time.monotonic() - started_s
                return
            if time.monotonic() > deadline_s:
                raise LlamaServerError(
                    f"llama-server not healthy within {self.startup_timeout_s:.0f} s; "
                    f"log {self.log_path}:\n{self.log_tail()}"
                )
            time.sleep(0.1)

    def _terminate(self) -> None:
        if self._finalizer is not None:
            self._finalizer()  # runs _stop_process once; later calls are no-ops
            self._finalizer = None
        self._proc = None


def _health_ok(url: str, timeout_s: float = 2.0) -> bool:
    """True when ``GET url`` answers 200 (it answers 503 while the model loads)."""
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as response:
            body = response.read()
    except (urllib.error.URLError, OSError, TimeoutError):
        return False
    if response.status != 200:
        return False
    try:
        return json.loads(body).get("status", "ok") == "ok"
    except (ValueError, AttributeError):
        return True


# --------------------------------------------------------------------------- CLI


def _raise_keyboard_interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def main(argv: Sequence[str] | None = None, *, prog: str | None = None) -> int:
    """CLI: ``build`` | ``path`` | ``model`` | ``serve [--parallel N] [--port P]``.

    Returns the exit code: 0 on success, 1 when ``path`` finds no binary or a
    build or start fails.
    """
    parser = argparse.ArgumentParser(
        prog=prog or "loadbench engine",
        description="Build and run llama.cpp's llama-server with a tiny local test model.",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    build = sub.add_parser("build", help="build llama-server (cached) and print its path")
    build.add_argument("--jobs", type=int, default=None, help="parallel build jobs (default: CPUs)")
    sub.add_parser("path", help="print the llama-server path, or exit 1 if there is none")
    sub.add_parser("model", help="write the tiny test model (cached) and print its path")
    serve = sub.add_parser("serve", help="run llama-server on the tiny model until Ctrl-C")
    serve.add_argument("--parallel", type=int, default=4, help="server slots (-np)")
    serve.add_argument("--port", type=int, default=None, help="TCP port (default: a free one)")
    serve.add_argument("--ctx", type=int, default=8192, help="total KV cache in tokens (-c)")
    serve.add_argument("--model", default=None, help="GGUF model (default: the tiny model)")
    args = parser.parse_args(argv)

    def err(message: str) -> None:
        print(message, file=sys.stderr, flush=True)

    try:
        if args.command == "build":
            print(build_llama_server(jobs=args.jobs, log=err))
        elif args.command == "path":
            found = find_llama_server()
            if found is None:
                err("no llama-server found; build one with the `build` command")
                return 1
            print(found)
        elif args.command == "model":
            print(tiny_model_path())
        elif args.command == "serve":
            # Stop cleanly on SIGTERM (and on SIGINT even where a shell started us
            # with it ignored): otherwise llama-server would outlive us.
            for signum in (signal.SIGINT, signal.SIGTERM):
                signal.signal(signum, _raise_keyboard_interrupt)
            server = LlamaServer(args.model, port=args.port, n_parallel=args.parallel, n_ctx=args.ctx)
            with server:
                print(f"llama-server ready at {server.base_url} (log: {server.log_path})")
                print("Ctrl-C to stop", flush=True)
                interrupted = False
                try:
                    while server.running:
                        time.sleep(0.5)
                except KeyboardInterrupt:
                    # The terminal's SIGINT may have stopped llama-server too: not an error.
                    interrupted = True
                if not interrupted:
                    err(f"llama-server exited:\n{server.log_tail()}")
                    return 1
    except LlamaServerError as exc:
        err(str(exc))
        return 1
    except KeyboardInterrupt:  # interrupted while starting: the server is already stopped
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main(prog="python -m loadbench.engines.llamacpp"))
