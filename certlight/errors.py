"""One exception type for every user-facing mistake, so entry points can print it without a trace."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager


class CertlightError(ValueError):
    """A bad config value, a missing file, or any other error the user can fix."""


@contextmanager
def keyed(prefix: str) -> Iterator[None]:
    """Turn a library's plain ``ValueError("name=value ...")`` into the user's config key
    (``prefix.name=value ...``): code below the config layer knows its parameters, not keys."""
    try:
        yield
    except CertlightError:
        raise
    except ValueError as error:
        raise CertlightError(f"{prefix}.{error}") from None
