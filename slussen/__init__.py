"""Slussen: social prescribing against involuntary loneliness in Swedish primary care."""

__version__ = "0.1.0"
