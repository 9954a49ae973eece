"""Slicer's own Python, run for real: parameterNodeWrapper, ScriptedLoadableModule and SampleData from
`../shared/slicer/upstream`, slicer-core's MRML and `slicer.util`, and small stand-ins for the Qt/CTK
widgets of our `.ui` files.

The stand-ins mimic what Slicer's connectors and `slicer.util` call on a widget — properties that
clamp and emit like Qt's, signals, children, dynamic properties, `QUiLoader` building the `.ui`
(its `<connections>` included), `QTimer` driven by `slicer.app.processEvents()` — and nothing more.
Everything that decides whether a panel loads (which widget may bind to which annotated type, how
Sample Data checks a source, how "Reload and Test" finds a test class) is Slicer's code.
"""
import logging
import sys
import types
import xml.etree.ElementTree as ET
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
UPSTREAM = ROOT.parent / "shared" / "slicer" / "upstream"
MODULE_FOLDERS = {"ICHLocalization": ROOT / "ICHLocalization", "ICHTraining": ROOT / "ICHTraining"}


# --- signals and objects --------------------------------------------------------------------------
class Signal:
    def __init__(self):
        self._slots = []

    def connect(self, slot):
        self._slots.append(slot)

    def disconnect(self, slot=None):
        self._slots = [] if slot is None else [s for s in self._slots if s != slot]

    def emit(self, *args):
        for slot in list(self._slots):
            slot(*args[:_arity(slot, len(args))])


def _arity(slot, most):
    """PythonQt calls a slot with as many of the signal's arguments as it accepts."""
    import inspect

    try:
        params = inspect.signature(slot).parameters.values()
    except (TypeError, ValueError):
        return most
    if any(p.kind == p.VAR_POSITIONAL for p in params):
        return most
    return min(most, sum(p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD) for p in params))


class QObject:
    SIGNALS = ()

    def __init__(self, parent=None):
        self._properties, self._children, self._parent, self.name = {}, [], None, ""
        for signal in self.SIGNALS:
            setattr(self, signal, Signal())
        if parent is not None:
            self.setParent(parent)

    @property
    def objectName(self):
        return self.name

    def setParent(self, parent):
        if self._parent is not None:
            self._parent._children.remove(self)
        self._parent = parent
        if parent is not None:
            parent._children.append(self)

    def parent(self):
        return self._parent

    def children(self):
        return list(self._children)

    def findChildren(self, cls):
        found = []
        for child in self._children:
            if isinstance(child, cls):
                found.append(child)
            found += child.findChildren(cls)
        return found

    def property(self, name):
        return self._properties.get(name)

    def setProperty(self, name, value):
        self._properties[name] = value

    def connect(self, signature, slot):
        """PythonQt's string form: widget.connect("clicked(bool)", slot)."""
        getattr(self, signature.split("(")[0]).connect(slot)

    def className(self):
        return type(self).__name__


class QWidget(QObject):
    def __init__(self, parent=None):
        super().__init__(parent)
        self._layout = None
        self.enabled, self.visible, self.toolTip, self.text, self.styleSheet = True, True, "", "", ""

    def isWidgetType(self):
        return True

    def setLayout(self, layout):
        self._layout = layout
        layout._owner = self

    def layout(self):
        return self._layout

    def show(self):
        self.visible = True

    def setEnabled(self, enabled):
        self.enabled = enabled

    def setToolTip(self, text):
        self.toolTip = text


class QLayout:
    def __init__(self, owner=None):
        self._owner = None
        if owner is not None:
            owner.setLayout(self)

    def addWidget(self, widget, *args):
        widget.setParent(self._owner)

    def addRow(self, *items):
        for item in items:
            if isinstance(item, QWidget):
                item.setParent(self._owner)


def _value_property(name, convert=lambda self, v: v, signal=None):
    """A Qt property: the setter converts (clamps, rounds) and emits `signal` when the value changes."""

    def getter(self):
        return self._properties[name]

    def setter(self, value):
        value = convert(self, value)
        old = self._properties.get(name)
        self._properties[name] = value
        if signal and value != old:
            getattr(self, signal).emit(*(() if signal == "currentNodeChanged" else (value,)))

    return property(getter, setter)


class QCheckBox(QWidget):
    SIGNALS = ("stateChanged", "toggled")
    checked = _value_property("checked", lambda s, v: bool(v), "stateChanged")

    def __init__(self, parent=None):
        super().__init__(parent)
        self._properties["checked"] = False


class QPushButton(QWidget):
    SIGNALS = ("clicked", "toggled")
    checked = _value_property("checked", lambda s, v: bool(v), "toggled")

    def __init__(self, parent=None):
        super().__init__(parent)
        self._properties["checked"], self.checkable = False, False

    def click(self):
        if self.enabled:
            self.clicked.emit(self.checked)


class _Range(QWidget):
    """QSpinBox / QDoubleSpinBox / ctkSliderWidget: Qt clamps the value into [minimum, maximum]."""
    SIGNALS = ("valueChanged",)
    INTEGER = False

    def __init__(self, parent=None):
        super().__init__(parent)
        self._properties.update(minimum=0.0, maximum=99.0, value=0.0, decimals=0 if self.INTEGER else 2)
        self.singleStep = 1

    def _clamp(self, v):
        v = min(max(v, self._properties["minimum"]), self._properties["maximum"])
        return int(round(v)) if self.INTEGER else round(float(v), self._properties["decimals"])

    value = _value_property("value", _clamp, "valueChanged")

    def _set_bound(name):
        def setter(self, v):
            self._properties[name] = v
            self.value = self._properties["value"]  # Qt re-clamps the value

        return property(lambda self: self._properties[name], setter)

    minimum, maximum = _set_bound("minimum"), _set_bound("maximum")
    decimals = _set_bound("decimals")

    def setRange(self, lo, hi):
        self._properties.update(minimum=lo, maximum=hi)
        self.value = self._properties["value"]

    def setMinimum(self, v):
        self.minimum = v

    def setMaximum(self, v):
        self.maximum = v


class QSpinBox(_Range):
    INTEGER = True


class QDoubleSpinBox(_Range):
    pass


class ctkSliderWidget(_Range):
    pass


class QComboBox(QWidget):
    SIGNALS = ("currentIndexChanged",)

    def __init__(self, parent=None):
        super().__init__(parent)
        self._items = []
        self._properties["currentIndex"] = -1

    def _index(self, i):
        return int(i) if -1 <= int(i) < len(self._items) else self._properties["currentIndex"]

    currentIndex = _value_property("currentIndex", _index, "currentIndexChanged")

    def addItem(self, text, data=None):
        self._items.append([text, data])
        if self.currentIndex == -1:
            self.currentIndex = 0

    def addItems(self, texts):
        for text in texts:
            self.addItem(text)

    def clear(self):
        self._items = []
        self.currentIndex = -1

    @property
    def count(self):
        return len(self._items)

    @property
    def currentText(self):
        return self._items[self.currentIndex][0] if self.currentIndex >= 0 else ""

    @property
    def currentData(self):
        return self._items[self.currentIndex][1] if self.currentIndex >= 0 else None

    def itemText(self, i):
        return self._items[i][0]

    def setItemText(self, i, text):
        self._items[i][0] = text

    def itemData(self, i):
        return self._items[i][1]


class QLineEdit(QWidget):
    SIGNALS = ("textChanged",)
    text = _value_property("text", lambda s, v: str(v), "textChanged")

    def __init__(self, parent=None):
        super().__init__(parent)
        self._properties["text"] = ""


class QLabel(QWidget):
    pass


class QProgressBar(QWidget):
    def __init__(self, parent=None):
        super().__init__(parent)
        self.value, self.minimum, self.maximum = 0, 0, 100


class ctkPathLineEdit(QWidget):
    SIGNALS = ("currentPathChanged",)
    currentPath = _value_property("currentPath", lambda s, v: str(v), "currentPathChanged")
    Dirs, Files = 1, 2

    def __init__(self, parent=None):
        super().__init__(parent)
        self._properties["currentPath"], self.filters = "", 0


class ctkCollapsibleButton(QWidget):
    collapsed = False


class qMRMLWidget(QWidget):
    SIGNALS = ("mrmlSceneChanged",)

    def setMRMLScene(self, scene):
        self._scene = scene
        self.mrmlSceneChanged.emit(scene)

    def mrmlScene(self):
        return getattr(self, "_scene", None)


class qSlicerScriptedLoadableModuleWidget(qMRMLWidget):
    """The panel Slicer gives a module widget (its `parent`)."""
    isEntered = False


class qMRMLNodeComboBox(QWidget):
    """Lists the scene's nodes of `nodeTypes`; selecting one emits currentNodeChanged."""
    SIGNALS = ("currentNodeChanged",)

    def __init__(self, parent=None):
        super().__init__(parent)
        self._scene, self._node, self.nodeTypes = None, None, []
        self.addEnabled = self.removeEnabled = self.noneEnabled = False

    def setMRMLScene(self, scene):
        self._scene = scene

    def currentNode(self):
        return self._node

    def setCurrentNode(self, node):
        if node is not None and not any(node.IsA(t) for t in self.nodeTypes):
            return  # Qt's combo box ignores a node of another type
        if node is not self._node:
            self._node = node
            self.currentNodeChanged.emit()


class QTimer(QObject):
    """Fired by `slicer.app.processEvents()` (the stand-in event loop), once per call while active."""
    SIGNALS = ("timeout",)
    active = []

    def __init__(self, parent=None):
        super().__init__(parent)
        self.interval, self.singleShot = 0, False

    def setInterval(self, msec):
        self.interval = msec

    def start(self, msec=None):
        if self not in QTimer.active:
            QTimer.active.append(self)

    def stop(self):
        if self in QTimer.active:
            QTimer.active.remove(self)

    def isActive(self):
        return self in QTimer.active


class QIcon:
    def __init__(self, path=""):
        self.path = str(path)


class QSettings:
    def value(self, key, default=None):
        return default

    def contains(self, key):
        return False

    def setValue(self, key, value):
        pass


class QFile:
    ReadOnly = 1

    def __init__(self, path):
        self.path = str(path)

    def exists(self):
        return Path(self.path).is_file()

    def open(self, mode):
        return self.exists()


class QUiLoader:
    """Builds a `.ui` file's widget tree: classes, properties (dynamic ones too), layouts, connections."""

    def load(self, qfile):
        tree = ET.parse(qfile.path).getroot()
        names = {}
        top = self._widget(tree.find("widget"), None, names)
        for c in tree.iter("connection"):
            sender, receiver = names[c.findtext("sender")], names[c.findtext("receiver")]
            getattr(sender, c.findtext("signal").split("(")[0]).connect(getattr(receiver, c.findtext("slot").split("(")[0]))
        return top

    def _widget(self, element, parent, names):
        cls = WIDGET_CLASSES[element.get("class")]
        widget = cls(parent)
        widget.name = element.get("name")
        names[widget.name] = widget
        for prop in element.findall("property"):
            self._set(widget, prop)
        self._children(element, widget, names)
        return widget

    def _children(self, element, widget, names):
        for child in element:
            if child.tag == "widget":
                self._widget(child, widget, names)
            elif child.tag in ("layout", "item"):
                self._children(child, widget, names)

    @staticmethod
    def _set(widget, prop):
        value_element = prop[0]
        kind, text = value_element.tag, value_element.text
        value = {"bool": lambda: text == "true", "number": lambda: int(text), "double": lambda: float(text),
                 "stringlist": lambda: [s.text for s in value_element], "enum": lambda: text}.get(kind, lambda: text or "")()
        name = prop.get("name")
        if prop.get("stdset") == "0":
            widget.setProperty(name, value)
        elif name in ("minimum", "maximum") and isinstance(widget, _Range):
            widget.setRange(value if name == "minimum" else widget.minimum, value if name == "maximum" else widget.maximum)
        else:
            setattr(widget, name, value)


WIDGET_CLASSES = {c.__name__: c for c in (QWidget, QCheckBox, QPushButton, QSpinBox, QDoubleSpinBox, ctkSliderWidget,
                                          QComboBox, QLineEdit, QLabel, QProgressBar, ctkPathLineEdit,
                                          ctkCollapsibleButton, qMRMLWidget, qMRMLNodeComboBox)}
WIDGET_CLASSES.update(QVBoxLayout=QLayout, QHBoxLayout=QLayout, QFormLayout=QLayout)


class _Unused:
    """A Qt class that our modules never instantiate but Slicer's code names (in type tuples)."""


class QMessageBox(_Unused):
    """The buttons and icons slicer.util's message displays name; testing mode only logs the text."""
    Ok, Cancel, Information, Warning, Critical, Question = 0x400, 0x400000, 1, 2, 3, 4


class _ModuleManager(QObject):
    SIGNALS = ("moduleAboutToBeUnloaded",)


class _App(QObject):
    SIGNALS = ("startupCompleted",)
    applicationName = "Slicer"

    def moduleManager(self):
        return _ModuleManager()

    def processEvents(self, *args):
        for timer in list(QTimer.active):
            timer.timeout.emit()
            if timer.singleShot:
                timer.stop()

    def layoutManager(self):
        return None  # no views: Slicer started without its main window

    def userSettings(self):
        return QSettings()

    def commandOptions(self):
        return types.SimpleNamespace(noMainWindow=True, testingEnabled=True)

    def testingEnabled(self):
        return True  # as Slicer started with --testing


# --- the application ----------------------------------------------------------------------------
def _module(name, **attrs):
    module = types.ModuleType(name)
    module.__dict__.update(attrs)
    sys.modules[name] = module
    return module


def start():
    """Install the stand-ins and import Slicer's upstream Python. Returns the `slicer` module."""
    import slicer
    import slicer.util

    if getattr(slicer, "app", None) is not None:
        return slicer
    from ICHLocalizationLib import headless

    headless.scene()  # slicer-core scene with the module logics, before slicer.app exists
    unused = {n: type(n, (_Unused,), {}) for n in (
        "QSlider", "QTextEdit", "QColor", "QMenu", "QAction", "QToolButton", "QSizePolicy",
        "QDesktopServices", "QUrl", "QEvent", "QEventLoop", "QDialog")}
    _module("qt", QObject=QObject, QWidget=QWidget, QCheckBox=QCheckBox, QPushButton=QPushButton, QSpinBox=QSpinBox,
            QDoubleSpinBox=QDoubleSpinBox, QComboBox=QComboBox, QLineEdit=QLineEdit, QLabel=QLabel,
            QProgressBar=QProgressBar, QTimer=QTimer, QMessageBox=QMessageBox, QSettings=QSettings, QIcon=QIcon, QFile=QFile, QUiLoader=QUiLoader,
            QVBoxLayout=QLayout, QHBoxLayout=QLayout, QFormLayout=QLayout, Qt=types.SimpleNamespace(), **unused)
    ctk_unused = {n: type(n, (_Unused,), {}) for n in (
        "ctkCheckBox", "ctkCheckablePushButton", "ctkDoubleSlider", "ctkDoubleSpinBox", "ctkComboBox",
        "ctkRangeWidget", "ctkDoubleRangeSlider", "ctkDirectoryButton", "ctkColorPickerButton")}
    _module("ctk", ctkSliderWidget=ctkSliderWidget, ctkPathLineEdit=ctkPathLineEdit,
            ctkCollapsibleButton=ctkCollapsibleButton, **ctk_unused)
    _module("slicer.i18n", tr=lambda text: text, translate=lambda context, text: text)
    slicer.qMRMLWidget, slicer.qMRMLNodeComboBox = qMRMLWidget, qMRMLNodeComboBox
    for name in ("qMRMLSliderWidget", "qMRMLSpinBox", "qMRMLRangeWidget"):
        setattr(slicer, name, type(name, (_Unused,), {}))
    slicer.app = _App()
    slicer.util.delayDisplay = lambda message, *args, **kwargs: logging.info(message)
    slicer.__path__.append(str(UPSTREAM / "Base" / "Python" / "slicer"))
    sys.path.insert(0, str(UPSTREAM / "Modules" / "Scripted" / "SampleData"))
    for folder in MODULE_FOLDERS.values():
        sys.path.insert(0, str(folder))
    import slicer.parameterNodeWrapper  # noqa: F401 - Slicer's own binding code
    import slicer.ScriptedLoadableModule  # noqa: F401

    return slicer


def stop():
    """Leave the process as start() found it: no slicer.app (so headless code makes its own scenes again)."""
    import slicer

    if hasattr(slicer, "app"):
        del slicer.app
    QTimer.active.clear()


def load_module(name):
    """What Slicer does for a scripted module: construct it with a parent that carries its path,
    register it under slicer.modules, then build its widget and call setup()."""
    import importlib

    import slicer

    module = importlib.import_module(name)
    parent = types.SimpleNamespace(path=str(MODULE_FOLDERS[name] / f"{name}.py"))
    getattr(module, name)(parent)
    setattr(slicer.modules, name.lower(), parent)
    panel = qSlicerScriptedLoadableModuleWidget()
    panel.setLayout(QLayout())
    widget = getattr(module, f"{name}Widget")(panel)
    widget.setup()
    parent.widgetRepresentation = lambda: widget
    return widget


def run_events_until(done, timeout_s=900):
    """The application's event loop: process events until `done()`."""
    import time

    import slicer

    end = time.monotonic() + timeout_s
    while not done():
        if time.monotonic() > end:
            raise TimeoutError("the background work did not finish")
        slicer.app.processEvents()
        time.sleep(0.02)
