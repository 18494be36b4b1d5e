"""`slussen serve`: gunicorn on Linux and macOS (see the README for Windows)."""

from __future__ import annotations

from typing import Any


def run(*, host: str, port: int, workers: int, extra: dict[str, Any] | None = None) -> None:
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
                "threads": 4,
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
