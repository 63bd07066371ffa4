"""Column types shared by every model: timezone-aware timestamps set by the database."""
import datetime as dt
from typing import Annotated

from sqlalchemy import DateTime, func
from sqlalchemy.orm import mapped_column

# server_default, not a Python default: the database clock is the one all processes share.
Timestamp = Annotated[dt.datetime, mapped_column(DateTime(timezone=True), server_default=func.now())]
TimestampOrNone = Annotated[dt.datetime | None, mapped_column(DateTime(timezone=True))]
