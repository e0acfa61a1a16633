"""The ``appliance`` command line: everything but ``up`` goes through the control API."""
