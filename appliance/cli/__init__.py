"""The ``appliance`` command line: everything but ``up`` goes through the control API.

Plugins' commands (``register_commands``) use ``connect(ctx)`` for a control API client and the helpers in
``appliance.cli.output`` (``json_option``, ``emit_json``, ``table``) so every command looks the same.
"""


def connect(ctx):
    """A ``Client`` for the daemon of the home the command was run with (``--home`` or the default)."""
    from .main import client

    return client(ctx)
