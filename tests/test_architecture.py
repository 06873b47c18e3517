"""Layering rules, checked on the import graph read from the source with ``ast`` (nothing under test is imported).

recflow has one package per pipeline stage. The rules keep the stages a DAG whose imports run down the layer
table below, keep Airflow inside ``recflow.orchestration`` (Spark jobs run where Airflow is not installed), and
keep function-level imports for deferring heavy libraries only. Every check is a pure function of a graph built
from a root directory, so the self-tests at the end plant each violation in a fake tree and prove it is caught.
"""

from __future__ import annotations

import ast
import functools
import io
import itertools
import re
import textwrap
import tokenize
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
# Lower rank = lower layer. A module may import its own stage package or one of equal or lower rank.
LAYERS = {
    **dict.fromkeys(("constants", "recflow"), 0),
    "config": 1,
    "spark": 2,
    **dict.fromkeys(("data", "models", "scoring", "services"), 3),
    **dict.fromkeys(("validation", "evaluation", "registry"), 4),
    **dict.fromkeys(("training", "promotion", "batch", "streaming", "serving_http"), 5),
    **dict.fromkeys(("orchestration", "cli"), 6),
}
ENTRY_POINTS = ("recflow_plugin", "dags", "spark_jobs")  # loaded by their hosts: may import recflow, never imported
AIRFLOW_HOME_GROUND = ("recflow.orchestration", "recflow_plugin", "dags")
SPARK_JOB_FORBIDDEN = ("airflow", "dags", "recflow.orchestration")
NO_IO_STAGES, IO_PACKAGES = ("scoring", "models"), ("recflow.config", "recflow.registry")
MAX_TOP_LEVEL_MODULES = 3
DEFERRED = re.compile(r"#\s*deferred:\s*\S")  # a reason must follow the colon
UNSAID = "inside a function without a '# deferred:' reason"


@dataclass(frozen=True)
class Import:
    """One resolved import: ``target`` is a graph module, or an external library's top-level name."""

    target: str
    line: int
    in_function: bool  # runs when a function is called, not when the module is imported
    type_only: bool  # under ``if TYPE_CHECKING:``
    deferred: bool  # a '# deferred:' reason on its line(s) or the line above


@dataclass(frozen=True)
class Graph:
    root: Path
    paths: dict[str, Path]  # module -> source file
    imports: dict[str, list[Import]]

    def where(self, module: str, imp: Import) -> str:
        """``path:line`` of an import, relative to the root, for failure messages."""
        return f"{self.paths[module].relative_to(self.root)}:{imp.line}"

    def internal(self, module: str) -> Iterator[Import]:
        return (imp for imp in self.imports[module] if imp.target in self.paths)


def under(name: str, *prefixes: str) -> bool:
    return any(name == prefix or name.startswith(f"{prefix}.") for prefix in prefixes)


def stage(module: str) -> str:
    """``recflow.batch.job`` -> ``batch``; ``recflow`` -> ``recflow``; ``dags.x`` -> ``dags``."""
    head, _, rest = module.partition(".")
    return rest.split(".")[0] if head == "recflow" and rest else head


def discover(root: Path) -> dict[str, Path]:
    """Every module of the graph: the recflow package, the Airflow plugin, the Spark jobs and the DAG files."""
    plugins, found = root / "plugins", {}
    for path in sorted((plugins / "recflow").rglob("*.py")):
        parts = path.relative_to(plugins).with_suffix("").parts
        found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    if (plugins / "recflow_plugin.py").is_file():
        found["recflow_plugin"] = plugins / "recflow_plugin.py"
    for group in ("spark_jobs", "dags"):
        found.update({f"{group}.{path.stem}": path for path in sorted((root / group).glob("*.py"))})
    return found


def _is_type_checking(test: ast.expr) -> bool:
    return getattr(test, "id", getattr(test, "attr", None)) == "TYPE_CHECKING"  # TYPE_CHECKING, typing.TYPE_CHECKING


def _import_nodes(tree: ast.AST) -> Iterator[tuple[ast.Import | ast.ImportFrom, bool, bool]]:
    """Every import anywhere in the tree, with (in_function, type_only). Top-level ``if`` blocks are top level."""
    stack: list[tuple[ast.AST, bool, bool]] = [(tree, False, False)]
    while stack:
        node, in_function, type_only = stack.pop()
        if isinstance(node, ast.Import | ast.ImportFrom):
            yield node, in_function, type_only
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            stack += [(child, in_function, True) for child in node.body]
            stack += [(child, in_function, type_only) for child in node.orelse]
            continue
        in_function |= isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda)
        stack += [(child, in_function, type_only) for child in ast.iter_child_nodes(node)]


def _names(node: ast.Import | ast.ImportFrom, module: str, is_package: bool) -> list[str]:
    """Absolute dotted names an import asks for; ``from a import b`` asks for ``a.b`` (a submodule or not)."""
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names]
    package = module.split(".")[: None if is_package else -1]  # what a relative import is relative to
    anchor = package[: max(0, len(package) - node.level + 1)] if node.level else []
    base = ".".join(filter(None, [*anchor, node.module]))
    return [base if alias.name == "*" else f"{base}.{alias.name}" for alias in node.names]


def _prefixes(name: str) -> list[str]:
    """``a.b.c`` -> ``[a.b.c, a.b, a]``: the module and the packages importing it runs, longest first."""
    return list(reversed(list(itertools.accumulate(name.split("."), lambda package, part: f"{package}.{part}"))))


def _resolve(name: str, modules: dict[str, Path]) -> str:
    """The longest prefix of ``name`` that is a graph module, else the external library's top-level name."""
    prefixes = _prefixes(name)
    return next((prefix for prefix in prefixes if prefix in modules), prefixes[-1])


def build_graph(root: Path) -> Graph:
    """Parse every module under ``root`` into resolved imports."""
    paths = discover(root)
    imports: dict[str, list[Import]] = {}
    for module, path in paths.items():
        source = path.read_text()
        tokens = tokenize.generate_tokens(io.StringIO(source).readline)
        reasons = {tok.start[0] for tok in tokens if tok.type == tokenize.COMMENT and DEFERRED.match(tok.string)}
        found = []
        for node, in_function, type_only in _import_nodes(ast.parse(source, filename=str(path))):
            deferred = not reasons.isdisjoint(range(node.lineno - 1, (node.end_lineno or node.lineno) + 1))
            for name in _names(node, module, path.name == "__init__.py"):
                found.append(Import(_resolve(name, paths), node.lineno, in_function, type_only, deferred))
        imports[module] = sorted(set(found), key=lambda imp: (imp.line, imp.target))  # one per target and line
    return Graph(root, paths, imports)


Hop = tuple[str, str]  # (node, the import that reached it: the node itself, or a submodule when node is its package)


def _bfs(start: str, step: Callable[[str], Iterable[Hop]], goal: Callable[[str], bool]) -> list[Hop]:
    """The shortest chain from ``start`` (which counts) to a ``goal`` node, or [] if there is none."""
    seen, queue = {start: [(start, start)]}, deque([start])
    while queue:
        node = queue.popleft()
        if goal(node):
            return seen[node]
        for nxt, via in step(node):
            if nxt not in seen:
                seen[nxt] = [*seen[node], (nxt, via)]
                queue.append(nxt)
    return []


def cycles(adjacency: dict[str, set[str]]) -> list[list[str]]:
    """The shortest cycle through each edge that lies on a cycle (so: every strongly connected component).

    Covering every edge, not one cycle per component as graphlib's CycleError gives, shows every import that
    could be cut. Cycles are closed (``[a, b, a]``), rotated to start at their smallest node, deduplicated.
    """

    def step(node: str) -> Iterator[Hop]:
        return ((nxt, nxt) for nxt in sorted(adjacency[node]))

    found = set()
    for src in adjacency:
        for dst in adjacency[src]:
            if back := _bfs(dst, step, src.__eq__):  # the edge src -> dst closes a cycle
                loop = [src, *(node for node, _ in back[:-1])]
                first = loop.index(min(loop))
                found.add((*loop[first:], *loop[:first], min(loop)))
    return [list(loop) for loop in sorted(found, key=lambda loop: (sorted(set(loop)), len(loop), loop))]


def adjacency(graph: Graph, key: Callable[[str], str] = str) -> dict[str, set[str]]:
    """Internal edges between ``key(module)`` nodes: modules as they are, or collapsed with ``key=stage``.

    Edges inside one key are dropped unless they are a real self-import (a stage may import itself).
    """
    edges: dict[str, set[str]] = {key(module): set() for module in graph.paths}
    for module in graph.paths:
        edges[key(module)] |= {
            key(imp.target) for imp in graph.internal(module) if imp.target == module or key(imp.target) != key(module)
        }
    return edges


def _witness(graph: Graph, src: str, dst: str, key: Callable[[str], str] = str) -> str:
    """Where the hop ``src -> dst`` (between modules, or stages with ``key=stage``) is made: its first import."""
    module, imp = next((m, i) for m in graph.paths if key(m) == src for i in graph.internal(m) if key(i.target) == dst)
    kind = " under TYPE_CHECKING" if imp.type_only else " inside a function" if imp.in_function else ""
    return f"{graph.where(module, imp)}: {module} imports {imp.target}{kind}"


def cycle_report(graph: Graph, key: Callable[[str], str] = str) -> list[str]:
    """Each cycle as ``a -> b -> a``, followed by the import that makes each hop."""
    lines = []
    for loop in cycles(adjacency(graph, key)):
        lines.append(" -> ".join(loop))
        lines += [f"    {_witness(graph, a, b, key)}" for a, b in itertools.pairwise(loop)]
    return lines


def _per_import(graph: Graph, problem: Callable[[str, Import], str | bool]) -> dict[str, list[str]]:
    """``path:line problem`` for every import that has one, grouped by importing module."""
    out: dict[str, list[str]] = {}
    for module, imports in graph.imports.items():
        out.setdefault(module, []).extend(
            f"{graph.where(module, i)} {why}" for i in imports if (why := problem(module, i))
        )
    return {module: problems for module, problems in out.items() if problems}


def _layer_problem(src: str, dst: str, layers: dict[str, int]) -> str | None:
    """Why stage ``src`` may not import stage ``dst``, or None. Unknown stages are stage_table_problems' job."""
    if src == dst or (src in ENTRY_POINTS and dst not in ENTRY_POINTS):
        return None  # an entry point may import any recflow stage (the Spark jobs' exceptions: forbidden_chains)
    if dst in ENTRY_POINTS:
        return f"{dst} is an entry point, loaded by its host and never imported"
    if src in layers and dst in layers and layers[dst] > layers[src]:
        return f"{src} (layer {layers[src]}) may not import {dst} (layer {layers[dst]}): imports run down"
    return None


def layer_violations(graph: Graph, layers: dict[str, int]) -> dict[str, list[str]]:
    """Imports run down the layer table; entry points (the plugin, DAG files, Spark jobs) are never imported."""

    def problem(module: str, imp: Import) -> str | bool:
        why = imp.target in graph.paths and _layer_problem(stage(module), stage(imp.target), layers)
        return bool(why) and f"imports {imp.target}: {why}"

    return _per_import(graph, problem)


def stage_table_problems(graph: Graph, layers: dict[str, int]) -> list[str]:
    """The layer table must name exactly the stage packages that exist."""
    stages = {stage(module) for module in graph.paths if under(module, "recflow")}
    return sorted(
        [f"unknown stage package {s}: give it a layer in tests/test_architecture.py" for s in stages - set(layers)]
        + [f"stage package {s} no longer exists: drop it from the layer table" for s in set(layers) - stages]
    )


def io_violations(graph: Graph) -> dict[str, list[str]]:
    """scoring and models compute on what they are given: reading settings or the registry is I/O."""

    def problem(module: str, imp: Import) -> str | bool:
        return (
            stage(module) in NO_IO_STAGES
            and under(imp.target, *IO_PACKAGES)
            and f"imports {imp.target}: {stage(module)} does no I/O of its own, pass the values in"
        )

    return _per_import(graph, problem)


def deferred_violations(graph: Graph) -> dict[str, list[str]]:
    """A function-level import is for deferring a heavy library: a recflow one must say which, and why."""

    def problem(_: str, imp: Import) -> str | bool:
        runs_late = imp.in_function and not imp.type_only
        return runs_late and not imp.deferred and imp.target in graph.paths and f"imports {imp.target} {UNSAID}"

    return _per_import(graph, problem)


def forbidden_chains(graph: Graph, sources: Iterable[str], forbidden: tuple[str, ...]) -> dict[str, str]:
    """For each source that reaches a ``forbidden`` module or library, the shortest import chain to it.

    Importing ``a.b.c`` also runs the ``__init__`` of ``a.b`` and ``a``, so those count as reached too.
    """

    def step(module: str) -> Iterator[Hop]:
        for imp in graph.imports.get(module, []):  # an external library is a node without imports of its own
            yield from ((p, imp.target) for p in _prefixes(imp.target) if p in graph.paths or p == imp.target)

    out = {}
    for source in sources:
        if chain := _bfs(source, step, lambda node: under(node, *forbidden)):
            hops = " -> ".join(node if via == node else f"{node} (package of {via})" for node, via in chain)
            first = next(imp for imp in graph.imports[source] if imp.target == chain[1][1])
            out[source] = f"{hops}\n    first hop: {graph.where(source, first)}"
    return out


def top_level_modules(root: Path) -> list[str]:
    return sorted(path.name for path in (root / "plugins" / "recflow").glob("*.py"))


# --- The rules, on the real tree ------------------------------------------------------------------------------

PATHS = discover(ROOT)
MODULES = sorted(PATHS)


@functools.cache
def real_graph() -> Graph:
    return build_graph(ROOT)


def test_no_import_cycles() -> None:
    report = cycle_report(real_graph())
    assert not report, "import cycles (cut one import per cycle):\n" + "\n".join(report)


def test_stage_packages_form_a_dag() -> None:
    report = cycle_report(real_graph(), stage)
    assert not report, "cycles between stage packages (each hop shows one import making it):\n" + "\n".join(report)


def test_layer_table_names_every_stage_package() -> None:
    assert not (problems := stage_table_problems(real_graph(), LAYERS)), "\n".join(problems)


@pytest.mark.parametrize("module", MODULES)
def test_imports_run_down_the_layers(module: str) -> None:
    assert not (problems := layer_violations(real_graph(), LAYERS).get(module)), "\n".join(problems or [])


@pytest.mark.parametrize("module", [m for m in MODULES if stage(m) in NO_IO_STAGES])
def test_scoring_and_models_do_no_io(module: str) -> None:
    assert not (problems := io_violations(real_graph()).get(module)), "\n".join(problems or [])
    # nor through another module: models -> data -> config would read settings all the same
    chain = forbidden_chains(real_graph(), [module], IO_PACKAGES).get(module)
    assert not chain, f"{stage(module)} does no I/O of its own, not even through other modules:\n{chain}"


@pytest.mark.parametrize("module", [m for m in MODULES if not under(m, *AIRFLOW_HOME_GROUND)])
def test_airflow_only_in_orchestration(module: str) -> None:
    chain = forbidden_chains(real_graph(), [module], ("airflow",)).get(module)
    assert not chain, f"only recflow.orchestration, the plugin and DAG files may reach Airflow:\n{chain}"


@pytest.mark.parametrize("module", [m for m in MODULES if under(m, "spark_jobs")])
def test_spark_jobs_reach_neither_airflow_nor_dags_nor_orchestration(module: str) -> None:
    chain = forbidden_chains(real_graph(), [module], SPARK_JOB_FORBIDDEN).get(module)
    assert not chain, f"Spark jobs run where Airflow is not installed:\n{chain}"


@pytest.mark.parametrize("module", MODULES, ids=lambda m: str(PATHS[m].relative_to(ROOT)))
def test_function_level_recflow_imports_say_why(module: str) -> None:
    assert not (problems := deferred_violations(real_graph()).get(module)), "\n".join(problems or [])


def test_few_top_level_modules() -> None:
    modules = top_level_modules(ROOT)
    assert len(modules) <= MAX_TOP_LEVEL_MODULES, f"plugins/recflow/ holds {modules}: move them into a stage package"


# --- Self-tests: each rule, fed a planted violation, must report it ---------------------------------------------


def plant(root: Path, *files: str) -> Graph:
    """A fake repository from ``"path: source"`` specs (under plugins/recflow/ unless in dags/ or spark_jobs/)."""
    for spec in files:
        relative, _, source = spec.partition(": ")
        path = root / (relative if relative.startswith(("dags/", "spark_jobs/")) else f"plugins/recflow/{relative}")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(source))
    return build_graph(root)


def test_catches_a_cycle_through_a_function_level_import(tmp_path: Path) -> None:
    graph = plant(tmp_path, "data/a.py: import recflow.data.b", "data/b.py: def f():\n    from recflow.data import a")
    assert cycle_report(graph) == [
        "recflow.data.a -> recflow.data.b -> recflow.data.a",
        "    plugins/recflow/data/a.py:1: recflow.data.a imports recflow.data.b",
        "    plugins/recflow/data/b.py:2: recflow.data.b imports recflow.data.a inside a function",
    ]


def test_catches_a_cycle_through_type_checking_only(tmp_path: Path) -> None:
    type_only = "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from recflow.data.{} import X"
    graph = plant(tmp_path, "data/a.py: " + type_only.format("b"), "data/b.py: " + type_only.format("a"))
    assert cycles(adjacency(graph)) == [["recflow.data.a", "recflow.data.b", "recflow.data.a"]]


def test_catches_a_self_import_and_a_stage_cycle(tmp_path: Path) -> None:
    graph = plant(tmp_path, "data/a.py: import recflow.data.a, recflow.models.m", "models/m.py: from ..data import a")
    assert cycles(adjacency(graph)) == [
        ["recflow.data.a", "recflow.data.a"],
        ["recflow.data.a", "recflow.models.m", "recflow.data.a"],
    ]
    assert cycles(adjacency(graph, stage)) == [["data", "data"], ["data", "models", "data"]]


def test_catches_an_upward_import_and_an_imported_entry_point(tmp_path: Path) -> None:
    graph = plant(
        tmp_path,
        "data/x.py: from recflow.batch.y import z",
        "batch/y.py: import recflow.data.x",
        "dags/d.py: import recflow.batch.y",
        "models/m.py: import dags.d",
    )
    problems = layer_violations(graph, LAYERS)
    assert list(problems) == ["recflow.data.x", "recflow.models.m"]
    assert problems["recflow.data.x"] == [
        "plugins/recflow/data/x.py:1 imports recflow.batch.y: data (layer 3) may not import batch (layer 5): "
        "imports run down"
    ]


def test_catches_an_unknown_and_a_vanished_stage(tmp_path: Path) -> None:
    problems = stage_table_problems(plant(tmp_path, "data/x.py: ", "widgets/w.py: "), {"data": 3, "gone": 1})
    assert [p.split(":")[0] for p in problems] == [
        "stage package gone no longer exists",
        "unknown stage package widgets",
    ]


def test_catches_an_indirect_airflow_import(tmp_path: Path) -> None:
    graph = plant(
        tmp_path,
        "data/x.py: from recflow.scoring import y",
        "scoring/y.py: def f():\n    import airflow.sdk",
        "spark_jobs/job.py: import recflow.data.x",
        "data/z.py: import recflow.config.settings",  # runs config/__init__.py, which reaches Airflow
        "config/__init__.py: from recflow.orchestration import hook",
        "config/settings.py: ",
        "orchestration/hook.py: from airflow import sdk",
    )
    chains = forbidden_chains(
        graph, ["recflow.data.x", "spark_jobs.job", "recflow.scoring", "recflow.data.z"], ("airflow",)
    )
    assert chains == {
        "recflow.data.x": "recflow.data.x -> recflow.scoring.y -> airflow\n    first hop: plugins/recflow/data/x.py:1",
        "spark_jobs.job": "spark_jobs.job -> recflow.data.x -> recflow.scoring.y -> airflow\n"
        "    first hop: spark_jobs/job.py:1",
        "recflow.data.z": "recflow.data.z -> recflow.config (package of recflow.config.settings) -> "
        "recflow.orchestration.hook -> airflow\n    first hop: plugins/recflow/data/z.py:1",
    }


def test_resolves_relative_and_from_imports(tmp_path: Path) -> None:
    graph = plant(
        tmp_path,
        "__init__.py: ",
        "constants.py: ",
        "config/settings.py: ",
        "data/__init__.py: from . import a\nfrom .b import thing, other",
        "data/a.py: from .. import constants\nfrom ..config import settings",
        "data/b.py: from . import a\nfrom recflow import constants\nimport numpy.linalg as la",
    )
    assert {i.target for i in graph.imports["recflow.data"]} == {"recflow.data.a", "recflow.data.b"}
    assert {i.target for i in graph.imports["recflow.data.a"]} == {"recflow.constants", "recflow.config.settings"}
    assert {i.target for i in graph.imports["recflow.data.b"]} == {"recflow.data.a", "recflow.constants", "numpy"}


def test_catches_a_function_level_recflow_import_without_a_reason(tmp_path: Path) -> None:
    source = """\
        import recflow.data.y
        if __name__ == "__main__":
            from recflow.data import y
        def bare():
            from recflow.data import y
        def reason_above():
            # deferred: pulls in pyspark
            from recflow.data import y
        def reason_on_the_line():
            import recflow.data.y  # deferred: pulls in pyspark
        def third_party():
            import pandas
        def type_only():
            if TYPE_CHECKING:
                from recflow.data import y
        """
    graph = plant(tmp_path, "data/x.py: " + source, "data/y.py: ")
    assert deferred_violations(graph) == {
        "recflow.data.x": [f"plugins/recflow/data/x.py:5 imports recflow.data.y {UNSAID}"]
    }


def test_catches_models_importing_config(tmp_path: Path) -> None:
    graph = plant(
        tmp_path,
        "models/m.py: from recflow.config.settings import s",
        "config/settings.py: ",
        "data/d.py: import recflow.config.settings",
    )
    assert list(io_violations(graph)) == ["recflow.models.m"]


def test_catches_models_reaching_config_through_data(tmp_path: Path) -> None:
    graph = plant(
        tmp_path,
        "models/m.py: from recflow.data import d",
        "data/d.py: import recflow.config.settings",
        "config/settings.py: ",
    )
    assert not io_violations(graph)  # no direct import ...
    assert "recflow.config" in forbidden_chains(graph, ["recflow.models.m"], IO_PACKAGES)["recflow.models.m"]


def test_catches_a_crowded_top_level(tmp_path: Path) -> None:
    plant(tmp_path, "__init__.py: ", "a.py: ", "b.py: ", "c.py: ")
    assert len(top_level_modules(tmp_path)) > MAX_TOP_LEVEL_MODULES


def test_test_files_have_unique_basenames() -> None:
    """pytest imports test files by basename (the test folders are not packages): two files of one name in
    different folders stop the whole suite at collection, and only when both folders are collected."""
    names: dict[str, list[str]] = {}
    for path in sorted((ROOT / "tests").rglob("test_*.py")):
        names.setdefault(path.name, []).append(str(path.relative_to(ROOT)))
    assert {name: paths for name, paths in names.items() if len(paths) > 1} == {}
