"""Import boundaries: the core and built-ins never import textual; starting the daemon loads no torch/onnxruntime."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def imported_modules(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


def test_core_and_builtin_plugins_never_import_textual():
    offenders = [str(p.relative_to(ROOT)) for d in ("appliance", "plugins") for p in (ROOT / d).rglob("*.py")
                 if "textual" in imported_modules(p)]
    assert offenders == []


def test_importing_every_core_and_builtin_module_loads_no_textual():
    code = (
        "import importlib, pkgutil, sys, json\n"
        "import appliance, plugins\n"
        "for pkg in (appliance, plugins):\n"
        "    for m in pkgutil.walk_packages(pkg.__path__, pkg.__name__ + '.'):\n"
        "        if m.name != 'appliance.__main__':\n"
        "            importlib.import_module(m.name)\n"
        "print(json.dumps(sorted(k for k in sys.modules if k.split('.')[0] == 'textual')))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout.strip().splitlines()[-1]) == []


def test_daemon_start_path_imports_neither_torch_nor_onnxruntime(tmp_path):
    # Build the daemon exactly as `appliance up` does (plugins loaded, stores opened, startup hooks run)
    code = (
        "import sys, json\n"
        "from pathlib import Path\n"
        "from appliance.daemon import Daemon\n"
        "from appliance.home import Home\n"
        "from appliance import config\n"
        f"home = Home(Path({str(tmp_path / 'home')!r})); home.ensure()\n"
        "app = Daemon(home, config.load(None), '127.0.0.1', 0).build()\n"
        "heavy = sorted({k.split('.')[0] for k in sys.modules} & {'torch', 'onnxruntime', 'onnx', 'textual'})\n"
        "app.store.close()\n"
        "print(json.dumps(heavy))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout.strip().splitlines()[-1]) == []
