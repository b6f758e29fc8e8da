"""Byte sizes, in one place (pure: the pure modules use them too, so no AWS import here)."""

from __future__ import annotations

MIB = 1024 * 1024
GIB = 1024 * MIB
