from appliance import hookimpl

APPLIANCE_CONTRACT = "2.0"


@hookimpl
def startup(app):
    pass
