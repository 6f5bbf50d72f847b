"""UniTalker (ECCV 2024): one model for many datasets, one output head per dataset or annotation type."""

from talkbench.methods.unitalker.model import UniTalker

__all__ = ["UniTalker"]
