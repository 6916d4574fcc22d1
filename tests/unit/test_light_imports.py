"""Every modelport module imports without the heavy backends, and the CLI's help loads none."""

import json
import subprocess
import sys

from tests.conftest import HEAVY, ROOT


def _loaded_after(code: str) -> list[str]:
    probe = f"{code}\nimport sys, json\nprint(json.dumps([m for m in {list(HEAVY)!r} if m in sys.modules]))"
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_every_module_imports_without_heavy_backends():
    code = ("import pkgutil, importlib, modelport\n"
            "for m in pkgutil.walk_packages(modelport.__path__, 'modelport.'):\n"
            "    if not m.name.endswith('__main__'): importlib.import_module(m.name)")
    assert _loaded_after(code) == []


def test_help_loads_no_heavy_backend():
    for argv in (["--help"], ["convert", "--help"]):
        code = ("import sys\nfrom modelport.cli import main\n"
                f"sys.argv = ['modelport', *{argv!r}]\n"
                "try:\n    main()\nexcept SystemExit:\n    pass")
        assert _loaded_after(code) == [], argv
