"""The house's shape, checked: a light facade, wings in order, imports one way, no cycle.

DESIGN.md ("The house") draws tlcore as wings whose imports run one way, behind a lazy
facade that loads neither Keras nor Ray; pages and ui reach tlcore through that facade
only, and tlcore never imports Streamlit. These tests read the code (a subprocess, the
import-linter contracts, grimp's import graph, the pages' syntax trees) rather than trust it.
"""

import ast
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import tlcore

ROOT = Path(__file__).resolve().parents[1]
WINGS = ("core", "models", "data", "inference", "training", "explain", "deploy")
HEAVY = ("ray", "keras", "tensorflow", "streamlit")


@pytest.mark.slow
def test_import_tlcore_loads_no_heavy_package_and_sets_no_environment_variable():
    script = (
        "import json, os, sys\n"
        "before = dict(os.environ)\n"
        "import tlcore\n"
        "print(json.dumps({'file': tlcore.__file__, 'environ': dict(os.environ) == before,\n"
        "                  'changed': sorted(set(os.environ.items()) ^ set(before.items())),\n"
        f"                  'heavy': sorted(m for m in sys.modules if m.split('.')[0] in {HEAVY!r})}}))\n"
    )
    # A bare environment: the tests' own settings (TF_CPP_MIN_LOG_LEVEL, RAY_*, TL_*) would hide a setdefault.
    bare = {"PATH": os.environ.get("PATH", ""), "HOME": os.environ.get("HOME", "/"), "PYTHONPATH": str(ROOT)}
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=ROOT, env=bare,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    seen = json.loads(done.stdout.splitlines()[-1])
    assert Path(seen["file"]).resolve() == ROOT / "tlcore" / "__init__.py"  # this checkout's tlcore
    assert seen["heavy"] == [], f"import tlcore loaded {seen['heavy'][:10]}"
    assert seen["environ"], f"import tlcore changed os.environ: {seen['changed']}"


def test_every_public_name_resolves():
    missing = []
    for name in tlcore.__all__:
        try:
            getattr(tlcore, name)
        except (AttributeError, ImportError) as exc:
            missing.append(f"{name}: {exc!r}")
    assert not missing, "tlcore.__all__ names what is not there:\n" + "\n".join(missing)
    assert len(tlcore.__all__) > 150


def test_the_facade_lists_its_names_by_wing_in_the_house_order():
    wings = [(where if isinstance(where, str) else where[0]).split(".")[0] for where in tlcore._EXPORTS.values()]
    runs = [wing for i, wing in enumerate(wings) if i == 0 or wing != wings[i - 1]]
    assert runs == list(WINGS), f"_EXPORTS runs through the wings as {runs}"
    assert tlcore.__all__ == sorted(tlcore._EXPORTS)


@pytest.mark.slow
def test_the_import_linter_contracts_are_kept():
    lint_imports = Path(sys.executable).parent / "lint-imports"
    done = subprocess.run([str(lint_imports), "--no-cache"], capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr


def _cycles(graph) -> list[list[str]]:
    """Every cycle a depth-first search closes (one per back edge), each as a path a -> ... -> a."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []
    found: list[list[str]] = []
    for start in sorted(graph.modules):
        if start in state:
            continue
        state[start] = 1
        path.append(start)
        stack = [iter(sorted(graph.find_modules_directly_imported_by(start)))]
        while stack:
            imported = next(stack[-1], None)
            if imported is None:
                stack.pop()
                state[path.pop()] = 2
            elif state.get(imported) == 1:
                found.append(path[path.index(imported):] + [imported])
            elif imported not in state:
                state[imported] = 1
                path.append(imported)
                stack.append(iter(sorted(graph.find_modules_directly_imported_by(imported))))
    return found


def test_no_import_cycle_among_tlcore_modules_even_inside_functions_or_type_checking():
    import grimp

    graph = grimp.build_graph("tlcore", cache_dir=None)  # every import: module level, in functions, TYPE_CHECKING
    assert len(graph.modules) > 40  # the whole package was read
    cycles = _cycles(graph)
    assert not cycles, "import cycles:\n" + "\n".join(" -> ".join(cycle) for cycle in cycles)


def test_the_cycle_search_finds_a_cycle():
    class Graph:
        modules = {"a", "b", "c", "d"}
        edges = {"a": {"b"}, "b": {"c"}, "c": {"a", "d"}, "d": set()}

        def find_modules_directly_imported_by(self, module):
            return self.edges[module]

    assert _cycles(Graph()) == [["a", "b", "c", "a"]]


def _imports(path: Path) -> list[tuple[int, str, list[str]]]:
    """(line, module, names) for every import in a file, wherever it stands (functions included)."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name, []) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0:
            found.append((node.lineno, node.module or "", [alias.name for alias in node.names]))
    return found


def test_pages_and_ui_reach_tlcore_through_the_facade_only():
    files = sorted([*ROOT.glob("pages/*.py"), *ROOT.glob("ui/*.py")])
    assert len(files) > 15
    wrong = []
    for path in files:
        for line, module, names in _imports(path):
            where = f"{path.relative_to(ROOT)}:{line}"
            if module.startswith("tlcore."):
                wrong.append(f"{where}: {'from' if names else 'import'} {module}")
            elif module == "tlcore" and not set(names) <= set(tlcore.__all__):  # `from tlcore import zoo` is a wing
                wrong.append(f"{where}: from tlcore import {sorted(set(names) - set(tlcore.__all__))}")
    assert not wrong, "use `import tlcore` and its public names:\n" + "\n".join(wrong)
    assert any(module == "tlcore" for path in files for _, module, _ in _imports(path))


def test_nothing_in_tlcore_imports_streamlit():
    files = sorted(ROOT.glob("tlcore/**/*.py"))
    assert len(files) > 40
    wrong = [f"{path.relative_to(ROOT)}:{line}: {module}" for path in files for line, module, _ in _imports(path)
             if module.split(".")[0] == "streamlit"]
    assert not wrong, "tlcore must not import Streamlit:\n" + "\n".join(wrong)
