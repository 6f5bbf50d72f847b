"""Tools for method authors: the conformance kit and its pytest fixtures.

    from talkbench.testing import check_method
    check_method(MyMethod, preset="tiny")  # raises ConformanceError naming each failed hook

In a plugin's tests, ``pytest_plugins = ["talkbench.testing.fixtures"]`` (in conftest.py) adds the
fixtures ``synthtalk_tiny_data`` and ``conformance``. See docs/adding-a-method.md.
"""

from .conformance import CHECKS, CheckFailed, ConformanceError, Subject, check_method, load_subject

__all__ = ["CHECKS", "CheckFailed", "ConformanceError", "Subject", "check_method", "load_subject"]
