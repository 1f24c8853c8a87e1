"""Configuration errors: one line naming the file, the entry and the fix."""


class ConfigError(ValueError):
    """An invalid seamless.yaml, seamless.profile.yaml or clusters file, or selection."""
