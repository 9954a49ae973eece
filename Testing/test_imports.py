"""Imports point one way. Every import of the two libraries, at module level or inside a function, is
read from the source; the graph of intra-project imports must have no cycle, the localization library
must never import the training library, and within each library imports run down the layers:
module files and CLIs → pipeline → methods → networks / detector / preprocessing → volume."""
import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
LIBRARIES = {"ICHLocalizationLib": ROOT / "ICHLocalization" / "ICHLocalizationLib",
             "ICHTrainingLib": ROOT / "ICHTraining" / "ICHTrainingLib"}
# lower number = lower layer; a module imports only from layers below its own (or its own package)
LAYERS = {
    "ICHLocalizationLib": 0, "ICHTrainingLib": 10,  # the packages' __init__ (docstrings only)
    "ICHLocalizationLib.volume": 0, "ICHLocalizationLib.findings": 1, "ICHLocalizationLib.integrity": 1,
    "ICHLocalizationLib.extension": 0,
    "ICHLocalizationLib.preprocessing": 2, "ICHLocalizationLib.io": 2, "ICHLocalizationLib.detector": 2,
    "ICHLocalizationLib.networks": 3, "ICHLocalizationLib.models": 3, "ICHLocalizationLib.phantom": 3,
    "ICHLocalizationLib.methods": 4, "ICHLocalizationLib.pipeline": 5, "ICHLocalizationLib.mrml": 5,
    "ICHLocalizationLib.report": 5, "ICHLocalizationLib.headless": 5, "ICHLocalizationLib.dicom_export": 5,
    "ICHLocalizationLib.batch": 6,
    "ICHLocalizationLib.runner": 6, "ICHLocalizationLib.scale": 7, "ICHLocalizationLib.cli": 8,
    "ICHLocalizationLib.demo": 9,
    "ICHTrainingLib.metrics": 10, "ICHTrainingLib.augment": 10, "ICHTrainingLib.pseudo_masks": 10,
    "ICHTrainingLib.datasets": 11,
    "ICHTrainingLib.evaluate": 12, "ICHTrainingLib.loop": 12, "ICHTrainingLib.sampling": 12,
    "ICHTrainingLib.families": 13, "ICHTrainingLib.train": 14, "ICHTrainingLib.tune_detector": 15,
    "ICHTrainingLib.tune_postprocessing": 15, "ICHTrainingLib.cli": 16,
}


def module_name(path: Path, library: str, root: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join([library, *parts])


def imports_of(path: Path, name: str):
    """Project modules that `path` (module `name`) imports, anywhere in its source."""
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            found |= {(base, f"{base}.{a.name}") for a in node.names}
    return found


def resolve(found, modules):
    """`from P import x` is an import of module P.x when there is one, else of P."""
    out = set()
    for item in found:
        base, member = item if isinstance(item, tuple) else (item, None)
        out.add(member if member in modules else base)
    return {m for m in out if m.split(".")[0] in LIBRARIES}


def graph():
    modules = {}
    for library, root in LIBRARIES.items():
        for path in root.rglob("*.py"):
            modules[module_name(path, library, root)] = path
    edges = {}
    for name, path in modules.items():
        edges[name] = {m for m in resolve(imports_of(path, name), modules) if m in modules and m != name}
    return edges


def layer(name):
    best = max((k for k in LAYERS if name == k or name.startswith(k + ".") and "." in k), key=len, default=None)
    return None if best is None else (best, LAYERS[best])


def test_there_is_no_import_cycle():
    edges = graph()
    index, low, stack, on_stack, cycles, counter = {}, {}, [], set(), [], [0]

    def visit(v):  # Tarjan's strongly connected components
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on_stack.add(v)
        for w in edges[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    for v in edges:
        if v not in index:
            visit(v)
    assert not cycles, f"import cycles: {cycles}"


def test_imports_run_down_the_layers():
    wrong = []
    for name, targets in graph().items():
        own = layer(name)
        assert own is not None, f"{name}: give it a layer in LAYERS"
        for target in targets:
            other = layer(target)
            if other[0] != own[0] and other[1] >= own[1]:
                wrong.append(f"{name} → {target}")
    assert not wrong, "imports that run up or sideways: " + "; ".join(sorted(wrong))


def test_the_localization_library_never_imports_training_code():
    edges = graph()
    assert not [(a, b) for a, bs in edges.items() if a.startswith("ICHLocalizationLib") for b in bs
                if b.startswith("ICHTrainingLib")]


@pytest.mark.parametrize("module_file", ["ICHLocalization/ICHLocalization.py", "ICHTraining/ICHTraining.py"])
def test_the_slicer_modules_do_not_call_the_cli_in_process(module_file):
    """A batch or a training run goes through a child process (ICHLocalizationLib.batch), never cli.main."""
    source = (ROOT / module_file).read_text()
    assert "ICHLocalizationLib import cli" not in source and "ICHLocalizationLib.cli import" not in source
