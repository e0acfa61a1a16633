from appliance import hookimpl  # noqa: F401

APPLIANCE_CONTRACT = "1.0"

raise RuntimeError("this plugin is broken at import")
