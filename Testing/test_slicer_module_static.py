"""What cannot run here (Qt): checked statically. Widget names used in the module files exist in
their .ui; parameter-node bindings match; CMake lists every script; Python 3.9 syntax."""
import ast
import re
import subprocess
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
MODULES = [("ICHLocalization", "ICHLocalizationLib"), ("ICHTraining", "ICHTrainingLib")]


def ui_names(ui):
    tree = ET.parse(ui)
    return {w.get("name") for w in tree.iter("widget")}, {
        w.get("name"): w.find("./property[@name='SlicerParameterName']/string").text
        for w in tree.iter("widget") if w.find("./property[@name='SlicerParameterName']") is not None}


@pytest.mark.parametrize("module,lib", MODULES)
def test_widget_names_exist_in_ui(module, lib):
    src = (ROOT / module / f"{module}.py").read_text()
    names, _ = ui_names(ROOT / module / "Resources" / "UI" / f"{module}.ui")
    used = set(re.findall(r"self\.ui\.(\w+)", src))
    assert used, "the module uses its .ui"
    assert used <= names, f"missing in the .ui: {sorted(used - names)}"


def test_parameter_node_bindings_match_fields():
    src = (ROOT / "ICHLocalization" / "ICHLocalization.py").read_text()
    tree = ast.parse(src)
    cls = next(n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == "ICHLocalizationParameterNode")
    fields = {n.target.id for n in cls.body if isinstance(n, ast.AnnAssign)}
    _, bindings = ui_names(ROOT / "ICHLocalization" / "Resources" / "UI" / "ICHLocalization.ui")
    assert set(bindings.values()) == fields


@pytest.mark.parametrize("module,lib", MODULES)
def test_cmake_lists_every_script_and_resource(module, lib):
    cmake = (ROOT / module / "CMakeLists.txt").read_text()
    scripts = {str(p.relative_to(ROOT / module)) for p in (ROOT / module / lib).rglob("*.py")}
    listed = set(re.findall(rf"^\s+({lib}/\S+\.py)$", cmake, re.M))
    assert scripts == listed, f"not listed: {sorted(scripts - listed)}; listed but missing: {sorted(listed - scripts)}"
    resources = set(re.findall(r"^\s+(Resources/\S+)$", cmake, re.M))
    assert all((ROOT / module / res).exists() for res in resources), resources
    bundled = {str(p.relative_to(ROOT / module)) for p in (ROOT / module / "Resources" / "Models").glob("*")
               if not p.name.startswith(".")}  # the catalogue's lock file is not bundled
    assert bundled <= resources, f"bundled but not installed by CMake: {sorted(bundled - resources)}"
    # the top-level macro adds the module's script, icon and panel
    assert "ich_scripted_module(" in cmake and f"set(MODULE_NAME {module})" in cmake
    for own in (f"{module}.py", f"Resources/Icons/{module}.png", f"Resources/UI/{module}.ui"):
        assert (ROOT / module / own).exists(), own
    top = (ROOT / "CMakeLists.txt").read_text()
    assert re.search(r"macro\(ich_scripted_module\).*slicerMacroBuildScriptedModule.*endmacro", top, re.S)


def test_extension_metadata_and_self_test_registration():
    top = (ROOT / "CMakeLists.txt").read_text()
    for key in ("EXTENSION_HOMEPAGE", "EXTENSION_CONTRIBUTORS", "EXTENSION_DESCRIPTION", "EXTENSION_ICONURL",
                "EXTENSION_SCREENSHOTURLS", "EXTENSION_DEPENDS", "add_subdirectory(ICHLocalization)", "add_subdirectory(ICHTraining)"):
        assert key in top
    assert "slicer_add_python_unittest" in (ROOT / "ICHLocalization" / "CMakeLists.txt").read_text()
    assert (ROOT / "ICHLocalization" / "Testing" / "Python" / "ICHLocalizationModuleTest.py").exists()
    from PIL import Image

    assert Image.open(ROOT / "ICHExtension.png").size == (128, 128)
    urls = re.search(r'EXTENSION_SCREENSHOTURLS "([^"]*)"', top).group(1).split() + [
        re.search(r'EXTENSION_ICONURL "([^"]*)"', top).group(1)]
    for url in urls:
        assert (ROOT / url.split("/main/", 1)[1]).is_file(), f"{url}: not a file in the repository"
        assert not subprocess.run(["git", "check-ignore", "-q", url.split("/main/", 1)[1]], cwd=ROOT).returncode == 0, url


def test_module_code_is_python_39():
    for folder in ("ICHLocalization", "ICHTraining"):
        for p in (ROOT / folder).rglob("*.py"):
            ast.parse(p.read_text(), filename=str(p), feature_version=(3, 9))


def test_libraries_do_not_import_slicer_modules_or_each_other_backwards():
    for p in (ROOT / "ICHLocalization" / "ICHLocalizationLib").rglob("*.py"):
        src = p.read_text()
        assert "ICHTrainingLib" not in src, f"{p.name}: the localization library must not import training code"
        assert "import ICHLocalization\n" not in src and "from ICHLocalization import" not in src
