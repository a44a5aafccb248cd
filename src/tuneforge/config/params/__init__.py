"""Importing this package registers every parameter declaration, group by group."""

from . import data  # noqa: F401
