"""A fixture plugin adding a source kind: pipe-separated files, read by DuckDB's CSV reader."""

from appliance import hookimpl

APPLIANCE_CONTRACT = "1.0"


class PipeSeparated:
    name = "psv"

    def read(self, path, options, columns):
        quoted = "'" + path.replace("'", "''") + "'"
        return f"read_csv({quoted}, delim='|', header=true, all_varchar=true)"


@hookimpl
def register_sources(register):
    register(PipeSeparated())
