"""One exception type for every user-facing mistake, so entry points can print it without a trace."""


class CertlightError(ValueError):
    """A bad config value, a missing file, or any other error the user can fix."""
