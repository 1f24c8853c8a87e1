"""Configuration errors: one line naming the file, the entry and the fix."""


class ConfigError(ValueError):
    """An invalid seamless.yaml, seamless.profile.yaml or clusters file, or selection."""


def did_you_mean(name, valid, otherwise):
    """"did you mean 'x'?" for the nearest of `valid`, else `otherwise`."""
    import difflib  # only on the way to an error: it costs more than the rest of a config load

    near = difflib.get_close_matches(str(name), sorted(valid), n=1)
    return f"did you mean '{near[0]}'?" if near else otherwise
