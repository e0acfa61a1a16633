from appliance import hookimpl

APPLIANCE_CONTRACT = "1.0"


@hookimpl
def regster_routes(register):
    pass
