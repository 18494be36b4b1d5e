"""`slussen serve`: gunicorn on Linux and macOS (see the README for Windows).

How many processes: rate limits and login throttling count in `ratelimit_storage_uri`. The
embedded default, `memory://`, counts inside one process, so with several worker processes each
would keep its own counts and a limit of 10 would let through up to 10 per worker. With memory
counts Slussen therefore runs one worker process with the threads the workers would have had
(`plan`); with Redis it runs the configured workers, which share their counts there.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

#: gunicorn threads per worker process.
THREADS_PER_WORKER = 4


@dataclass(frozen=True)
class Plan:
    """How `slussen serve` runs gunicorn: processes, threads each, and why (the start-up line)."""

    workers: int
    threads: int
    reason: str

    def describe(self, host: str, port: int) -> str:
        processes = (
            f"1 process with {self.threads} threads"
            if self.workers == 1
            else f"{self.workers} processes with {self.threads} threads each"
        )
        return f"Serving on {host}:{port}: {processes}; {self.reason}"


def counts_in_process(ratelimit_storage_uri: str) -> bool:
    """Whether rate limits count in the memory of each process (not shared between processes)."""
    return ratelimit_storage_uri.strip().lower().startswith("memory://")


def plan(ratelimit_storage_uri: str, workers: int) -> Plan:
    """The processes and threads for `workers` requested: one process with `workers` times the
    threads when the rate limits count in process memory (so every limit is exact), else
    `workers` processes."""
    if counts_in_process(ratelimit_storage_uri) and workers > 1:
        return Plan(
            1,
            workers * THREADS_PER_WORKER,
            f"rate limits count in this process's memory ({ratelimit_storage_uri}), so one "
            f"process serves instead of {workers}; set ratelimit_storage_uri to Redis to run "
            f"{workers} processes.",
        )
    in_memory = counts_in_process(ratelimit_storage_uri)
    where = "this process's memory" if in_memory else "shared storage"
    return Plan(workers, THREADS_PER_WORKER, f"rate limits count in {where}.")


def run(
    *,
    host: str,
    port: int,
    workers: int,
    threads: int = THREADS_PER_WORKER,
    extra: dict[str, Any] | None = None,
) -> None:
    """Run gunicorn in the foreground; each worker builds its own app with create_app()."""
    try:
        from gunicorn.app.base import BaseApplication
    except ImportError:  # pragma: no cover - Windows
        raise SystemExit(
            "gunicorn is not available on this system; run `waitress-serve --call "
            "slussen.app:create_app` instead (see README)."
        ) from None

    class _Slussen(BaseApplication):  # type: ignore[misc]
        def load_config(self) -> None:
            options = {
                "bind": f"[{host}]:{port}" if ":" in host else f"{host}:{port}",
                "workers": workers,
                "worker_class": "gthread",
                "threads": threads,
                "accesslog": "-",
                "timeout": 60,
                "graceful_timeout": 20,
                **(extra or {}),
            }
            for key, value in options.items():
                self.cfg.set(key, value)

        def load(self) -> Any:
            from slussen.app import create_app

            return create_app()

    _Slussen().run()
