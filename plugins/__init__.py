"""Built-in plugins. Each uses only the public contract (``appliance.hookimpl`` and ``appliance.contract``)."""
