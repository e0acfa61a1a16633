from appliance import hookimpl

APPLIANCE_CONTRACT = "1.1"


@hookimpl
def startup(app):
    raise RuntimeError("broken on purpose")
