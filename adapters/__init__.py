"""Sinks that deliver supervise's events elsewhere.

Each adapter lives in its own module and imports its own optional
dependencies, so importing this package costs nothing.
"""
