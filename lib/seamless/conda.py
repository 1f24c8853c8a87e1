"""Where conda's shell setup is: what activating an environment needs, here or on a
frontend (seamless-run --conda, a bash transformer's .environment, a launched service)."""

import os
import shutil
import subprocess


def profile_script():
    """conda.sh (from CONDA_ROOT, else `conda info --base`), or None without conda."""
    root = os.environ.get("CONDA_ROOT")
    if not root and shutil.which("conda"):
        found = subprocess.run(["conda", "info", "--base"], capture_output=True, text=True)
        root = found.stdout.strip() if found.returncode == 0 else None
    script = os.path.join(root, "etc", "profile.d", "conda.sh") if root else None
    return script if script and os.path.isfile(script) else None
