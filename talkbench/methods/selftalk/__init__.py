"""SelfTalk (ACM MM 2023): speech -> vertices, with a lip reader that must agree with a frozen recognizer."""

from talkbench.methods.selftalk.model import SelfTalk

__all__ = ["SelfTalk"]
