"""A port forward that lives as long as its service: `python -m seamless.launch.tunnel`.

    python -m seamless.launch.tunnel SSH_HOST KEY LOCAL_PORT:TARGET:REMOTE_PORT...

Runs `ssh -N -L 127.0.0.1:LOCAL_PORT:TARGET:REMOTE_PORT... SSH_HOST` and checks every
20 s that the service KEY still runs on the frontend; when it is gone (or ssh exits)
the tunnel ends. Started detached by the launcher, which records its pid.
"""

import signal
import subprocess
import sys
import time

CHECK_EVERY = 20.0


def main(argv):
    from seamless.launch.executor import LaunchError, SshExecutor

    ssh_host, key, *forwards = argv
    executor = SshExecutor(ssh_host)
    options = ["-N", "-o", "ExitOnForwardFailure=yes", "-o", "ServerAliveInterval=15"]
    for forward in forwards:
        options += ["-L", f"127.0.0.1:{forward}"]
    # a connection of its own: forwards held by a shared master would outlive this process
    forward = subprocess.Popen(executor.ssh_argv(*options, multiplex=False), stdin=subprocess.DEVNULL)

    def finish(*_):
        forward.terminate()
        sys.exit(0)

    signal.signal(signal.SIGTERM, finish)
    while forward.poll() is None:
        time.sleep(CHECK_EVERY)
        try:
            status = executor.call("inspect", key)
        except LaunchError:
            continue  # the frontend is unreachable for now; ssh itself will notice a dead link
        if not status or not status.get("alive") or status.get("status") not in ("running", "starting"):
            break
    finish()


if __name__ == "__main__":
    main(sys.argv[1:])
