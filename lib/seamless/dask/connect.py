"""A distributed.Client for a launched Dask scheduler: seamless.config.dask_client's one
import of distributed (only lib/seamless/dask imports dask), loaded in pure Dask stages only."""

from seamless.config.errors import ConfigError


def connect(address, timeout="10s"):
    """A Client of the scheduler at `address` (tcp://host:port), made the default client
    (as upstream's pure Dask mode does), so dask.compute() and friends use it too."""
    from distributed import Client

    try:
        return Client(address, timeout=timeout, set_as_default=True)
    except OSError as exc:  # TimeoutError included
        raise ConfigError(f"cannot connect to the Dask scheduler at {address}: {exc} (seamless-launch ps shows "
                          "whether its daskserver runs; seamless-launch logs KEY why not)") from None
