"""``python -m appliance``: the same command line as the ``appliance`` script, importing nothing more."""

import os
import sys

# ``python -m`` puts the current directory first on sys.path, where the plugins/ or tui.py of whatever directory
# the user stands in would shadow the built-ins. The ``appliance`` script never looks there; neither does this.
if not sys.flags.safe_path and sys.path and sys.path[0] in ("", os.getcwd()):
    del sys.path[0]

from .cli.main import main  # noqa: E402 - only once the current directory is off the path

main()
