"""What every demo step is given: the app, its settings, the demo password and the options of
`slussen demo`; each step adds lines to the report."""

from __future__ import annotations

from dataclasses import dataclass, field

from flask import Flask

from slussen.config import Settings


@dataclass
class DemoContext:
    app: Flask
    settings: Settings
    password: str
    cases: int
    #: How many units the demo region has (at least the three hand-made ones).
    units: int = 3
    report: list[str] = field(default_factory=list)
