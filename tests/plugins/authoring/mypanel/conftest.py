# An empty conftest at the package root: pytest puts this directory on sys.path, so the tests import mypanel.
