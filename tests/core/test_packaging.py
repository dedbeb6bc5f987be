"""What ships and what loading costs: every package is listed, and light paths stay light."""
from __future__ import annotations

import ast
import subprocess
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_every_package_directory_is_listed_in_pyproject():
    listed = set(tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    found = {".".join(p.parent.relative_to(ROOT).parts) for p in (ROOT / "airavata_magic").rglob("__init__.py")
             if "__pycache__" not in p.parts}
    assert found - listed == set(), "add these to [tool.setuptools] packages in pyproject.toml"
    assert "airavata_magic.kernels" in listed


def test_no_module_is_over_400_lines():
    long = {str(p.relative_to(ROOT)): n for p in (ROOT / "airavata_magic").rglob("*.py")
            if (n := len(p.read_text().splitlines())) > 400}
    assert long == {}


def _imports_after(code: str) -> set[str]:
    out = subprocess.run([sys.executable, "-c", code + "\nimport sys; print(' '.join(sorted(sys.modules)))"],
                         capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert out.returncode == 0, out.stderr
    return set(out.stdout.split())


def test_load_ext_and_a_profile_with_every_kind_import_no_client_library(tmp_path):
    prof = tmp_path / "cybershuttle.yml"
    prof.write_text(
        "resources:\n"
        "  hpc: {kind: slurm, host: h.example, user: u, known_hosts: /dev/null}\n"
        "  ws: {kind: ssh, host: h.example, user: u, known_hosts: /dev/null}\n"
        "  lab: {kind: kubernetes, namespace: ns, image: python:3.11}\n"
        "runtimes:\n  r: {resource: hpc, cpus: 2}\n")
    # a plain shell, as a kernel has (IPython's test shell imports matplotlib by itself)
    code = ("from IPython.core.interactiveshell import InteractiveShell\n"
            "ip = InteractiveShell.instance()\n"
            "ip.run_line_magic('load_ext', 'airavata_magic')\n"
            f"from airavata_magic.profile import load_profile\np = load_profile({str(prof)!r})\n"
            "assert set(p.resources) == {'local', 'hpc', 'ws', 'lab'}, p.resources\n")
    mods = _imports_after(code)
    heavy = {m for m in mods if m.split(".")[0] in ("paramiko", "kubernetes", "fsspec", "torch", "matplotlib")}
    assert heavy == set()
    assert "airavata_magic.magics" in mods or any(m.startswith("airavata_magic.magics") for m in mods)


def test_no_import_cycle_among_package_modules():
    """Module-level imports between airavata_magic modules form no cycle."""
    graph: dict[str, set[str]] = {}
    for p in (ROOT / "airavata_magic").rglob("*.py"):
        rel = p.relative_to(ROOT).with_suffix("")
        name = ".".join(rel.parts[:-1] if rel.name == "__init__" else rel.parts)
        pkg = name if rel.name == "__init__" else name.rpartition(".")[0]
        deps: set[str] = set()
        for node in ast.parse(p.read_text()).body:  # module level only: imports inside functions are lazy
            if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.dump(node.test):
                continue
            if isinstance(node, ast.ImportFrom):
                if node.level:
                    base = pkg.split(".")[: len(pkg.split(".")) - node.level + 1]
                    mod = ".".join(base + ([node.module] if node.module else []))
                else:
                    mod = node.module or ""
                targets = [mod] + [f"{mod}.{a.name}" for a in node.names]
            elif isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            else:
                continue
            deps |= {t for t in targets if t.startswith("airavata_magic")}
        graph[name] = deps
    known = set(graph)
    edges = {m: {d for d in ds if d in known and d != m} for m, ds in graph.items()}
    # a package's __init__ importing its own submodules is not a cycle with them
    edges = {m: {d for d in ds if not (d.startswith(m + "."))} for m, ds in edges.items()}
    state: dict[str, int] = {}
    cycle: list[str] = []

    def visit(m: str, stack: list[str]) -> bool:
        state[m] = 1
        for d in sorted(edges[m]):
            if state.get(d) == 1:
                cycle.extend(stack[stack.index(d):] + [d] if d in stack else [m, d])
                return True
            if state.get(d) is None and visit(d, stack + [d]):
                return True
        state[m] = 2
        return False

    for m in sorted(edges):
        if state.get(m) is None and visit(m, [m]):
            break
    assert cycle == [], " -> ".join(cycle)


def test_every_package_data_glob_matches_a_file():
    conf = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    for package, globs in conf["package-data"].items():
        folder = ROOT / conf.get("package-dir", {}).get(package, package.replace(".", "/"))
        for glob in globs:
            assert list(folder.glob(glob)), f"{package}: {glob} matches no file in {folder}"
