"""Test helper plugin: a source kind, monitor kinds, a job kind and a trainer that declare their options, so the
host checks the project's tables (and job params) against them; a route shows what the source kind was told."""

from appliance import JobKind, Option, Options, Route, hookimpl

APPLIANCE_CONTRACT = "1.1"

SEEN: dict = {}


class KeyedCsv:
    """``kind = "keyed"``: CSV read with the separator the source names; ``table`` is a label it must be given."""

    name = "keyed"
    options = Options(
        Option("table", str, required=True, doc="a label for the table the rows came from"),
        Option("sep", str, ",", "the field separator", choices=(",", ";", "|")),
    )

    def read(self, path, options, columns, source):
        SEEN["read"] = {"source": source, "options": options}
        return "read_csv('" + path.replace("'", "''") + "', header=true, delim='" + options["sep"] + "')"


def _probe(ctx):
    ctx.details.update(ctx.options)
    ctx.check("ok", False, "fine")


class OptionProbe:
    name = "option_probe"
    description = "records the options it was given"
    options = Options(
        Option("column", str, required=True, doc="the column to watch"),
        Option("columns", list[str], [], "more columns"),
        Option("mode", str, "strict", "how to compare", choices=("strict", "loose")),
        Option("limit", float, 1.0, "a threshold"),
    )
    run = staticmethod(_probe)


class LegacyProbe:
    """Options as a 1.0 plugin declares them: a dict of defaults, each taking its default's type."""

    name = "legacy_probe"
    description = "options as a plain dict"
    options = {"label": "x", "names": [], "anything": None}
    run = staticmethod(_probe)


def _greet(job):
    return {"greeting": " ".join([f"hello {job.params['who']}"] * job.params["times"])}


class OptsTrainer:
    name = "opts_trainer"
    tasks = ("binary",)
    description = "a trainer whose hyperparameters are declared options (never fitted in these tests)"
    hyperparameters = Options(Option("epochs", int, 3, "passes over the data"),
                              Option("optimizer", str, "sgd", "the optimizer", choices=("sgd", "adam")))

    @staticmethod
    def fit(ctx):
        raise NotImplementedError


@hookimpl
def register_sources(register):
    register(KeyedCsv())


@hookimpl
def register_monitors(register):
    register(OptionProbe())
    register(LegacyProbe())


@hookimpl
def register_job_kinds(register):
    register(JobKind("greet_opts", _greet, options=Options(Option("who", str, "world", "whom to greet"),
                                                          Option("times", int, 1, "how many times"))))


@hookimpl
def register_trainers(register):
    register(OptsTrainer())


@hookimpl
def register_routes(register):
    register(Route("GET", "/option-kinds/seen", lambda request: SEEN))
