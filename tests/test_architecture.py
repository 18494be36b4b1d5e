"""The house's shape: layers import downwards only (the import-linter contract in pyproject.toml),
no import circle between any two modules of slussen, and every module imports on its own."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterable, Iterator
from pathlib import Path

import grimp
import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def graph() -> grimp.ImportGraph:
    return grimp.build_graph("slussen", cache_dir=None)


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    return env


def test_layers_import_downwards_only() -> None:
    """`lint-imports` checks the layers contract of pyproject.toml."""
    script = Path(sys.executable).with_name("lint-imports")
    result = subprocess.run(
        [str(script), "--no-cache"],
        cwd=ROOT,
        env=_env(),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_module_has_a_layer(graph: grimp.ImportGraph) -> None:
    """A new module must be given its place in the contract, or the contract does not see it."""
    import tomllib

    config = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    (contract,) = [c for c in config["tool"]["importlinter"]["contracts"] if c["id"] == "layers"]
    layers = [name.strip() for layer in contract["layers"] for name in layer.split(":")]
    homeless = sorted(
        module
        for module in graph.modules
        if module != "slussen"
        and not any(module == layer or module.startswith(layer + ".") for layer in layers)
        # A package whose modules all have layers (slussen.core) needs none itself.
        and not any(layer.startswith(module + ".") for layer in layers)
    )
    assert homeless == [], f"modules in no layer of pyproject.toml: {homeless}"


def _circles(edges: dict[str, set[str]]) -> Iterator[list[str]]:
    """The strongly connected components of more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    counter = 0
    for start in sorted(edges):
        if start in index:
            continue
        work: list[tuple[str, Iterator[str]]] = [(start, iter(sorted(edges[start])))]
        index[start] = low[start] = counter
        counter += 1
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(edges.get(child, ())))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    yield sorted(component)


def _edges(graph: grimp.ImportGraph, modules: Iterable[str]) -> dict[str, set[str]]:
    kept = set(modules)
    return {m: set(graph.find_modules_directly_imported_by(m)) & kept for m in kept}


def test_circles_are_found() -> None:
    edges = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}, "e": {"e"}}
    assert list(_circles(edges)) == [["a", "b", "c"]]


def test_no_import_circles(graph: grimp.ImportGraph) -> None:
    """No module of slussen imports itself through others, not even inside a function."""
    circles = list(_circles(_edges(graph, graph.modules)))
    described = [
        " <-> ".join(circle)
        + ": "
        + "; ".join(
            f"{a} -> {b}"
            for a in circle
            for b in sorted(graph.find_modules_directly_imported_by(a))
            if b in circle
        )
        for circle in circles
    ]
    assert described == [], "import circles:\n" + "\n".join(described)


#: Runs in its own interpreter: loads the third-party packages slussen uses (the slow part of
#: every import), then imports each slussen module in a forked child that has no slussen module
#: loaded yet, so the child is a fresh interpreter as far as slussen's own imports go.
_FORK_IMPORTER = """
import importlib, os, sys, traceback
for name in sys.argv[1].split(","):
    try:
        importlib.import_module(name)
    except Exception:
        pass
assert not any(m == "slussen" or m.startswith("slussen.") for m in sys.modules)
failed = 0
running = 0
for module in sys.argv[2].split(","):
    if running == 2:  # the number of cores CI machines have
        failed += os.wait()[1] != 0
        running -= 1
    if os.fork() == 0:
        try:
            importlib.import_module(module)
        except BaseException:
            print(f"--- {module}", file=sys.stderr)
            traceback.print_exc()
            os._exit(1)
        os._exit(0)
    running += 1
for _ in range(running):
    failed += os.wait()[1] != 0
sys.exit(1 if failed else 0)
"""


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_each_module_imports_alone(graph: grimp.ImportGraph) -> None:
    """`import slussen.x` works for every module on its own: none depends on another slussen
    module having been imported first (which is what an import circle usually hides)."""
    external = grimp.build_graph("slussen", include_external_packages=True, cache_dir=None)
    third_party = sorted(m for m in external.modules if m.split(".")[0] != "slussen")
    modules = sorted(graph.modules)
    result = subprocess.run(
        [sys.executable, "-c", _FORK_IMPORTER, ",".join(third_party), ",".join(modules)],
        cwd=ROOT,
        env=_env(),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-6000:]
