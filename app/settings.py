"""The one way the web code reaches its `Settings` (set by `create_app`)."""

from __future__ import annotations

from flask import Flask, current_app

from core.settings import Settings

EXTENSION_KEY = "devpulse.settings"


def settings(app: Flask | None = None) -> Settings:
    """The settings of `app`, or of the app handling the current request."""
    return (app or current_app).extensions[EXTENSION_KEY]
