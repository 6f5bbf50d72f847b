"""The study app's request schema: what a rater's browser may send, checked before anything is used.

Strict types throughout: a JSON ``true`` is not an ``rt_ms`` of 1, ``5.0`` is not an integer and a
trial id is a string, never a list or an object. Every bound keeps values inside what SQLite and the
export can hold (SQLite integers are 64-bit; ``rt_ms`` >= 2**63 would overflow at insert time).
"""

from __future__ import annotations

import re
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictInt, StrictStr, ValidationError, field_validator

RATER_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")  # always used with fullmatch: no "$"-before-newline slip
RATER_HINT = "rater must be 1-64 letters, digits, '-' or '_'"
MAX_RT_MS = 7 * 24 * 3600 * 1000  # a week: longer is not a reaction time (and far below 2**63)
MAX_ID = 200  # trial ids and criteria are short names from the manifest


def valid_rater(value: object) -> bool:
    return isinstance(value, str) and RATER_ID.fullmatch(value) is not None


class AnswerBody(BaseModel):
    """The body of ``POST /api/answer``. Unknown keys are ignored (older pages may send more)."""

    model_config = ConfigDict(strict=True, extra="ignore")

    rater: StrictStr
    trial: Annotated[StrictStr, Field(min_length=1, max_length=MAX_ID)]
    criterion: Annotated[StrictStr, Field(min_length=1, max_length=MAX_ID)]
    # a side (2AFC trial) or a scale point "1".."9" (rating trial); the app checks which the trial takes
    choice: Literal["left", "right"] | Annotated[StrictStr, Field(pattern=r"^[1-9]$")]
    rt_ms: Annotated[StrictInt, Field(ge=0, le=MAX_RT_MS)] | None = None

    @field_validator("rater")
    @classmethod
    def _rater(cls, value: str) -> str:
        if not valid_rater(value):
            raise ValueError(RATER_HINT)
        return value


def describe(exc: ValidationError) -> str:
    """One line naming each bad field and what was expected (no input echoed back)."""
    parts = []
    for err in exc.errors(include_input=False, include_url=False):
        where = ".".join(str(p) for p in err["loc"]) or "body"
        msg = err["msg"].removeprefix("Value error, ")
        parts.append(f"{where}: {msg}")
    return "; ".join(parts)
