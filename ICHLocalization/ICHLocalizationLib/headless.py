"""A slicer-core scene wired like Slicer's application, for the CLI and tests.

Inside the Slicer application (`slicer.app` exists) nothing is wired: `slicer.mrmlScene` is used as is.
"""
import types

_LOGICS = None


def in_slicer_application() -> bool:
    try:
        import slicer
    except ImportError:
        return False
    return hasattr(slicer, "app")


class _ModuleStub:
    """What `slicer.util` calls: `slicer.modules.<name>.logic()`."""

    def __init__(self, logic):
        self._logic = logic

    def logic(self):
        return self._logic


def scene():
    """The application's scene in Slicer; elsewhere a new slicer-core scene with the module logics
    that slicer.util and the storage nodes need (volumes, segmentations, markups, colors, tables)."""
    global _LOGICS
    import slicer

    if in_slicer_application():
        return slicer.mrmlScene
    import vtk

    vtk.vtkLogger.SetStderrVerbosity(vtk.vtkLogger.VERBOSITY_ERROR)
    new = slicer.vtkMRMLScene()
    app = slicer.vtkSlicerApplicationLogic()
    app.SetMRMLScene(new)
    logics = {}
    for name, cls in (("Colors", slicer.vtkMRMLColorLogic), ("Volumes", slicer.vtkSlicerVolumesLogic),
                      ("Segmentations", slicer.vtkSlicerSegmentationsModuleLogic),
                      ("Markups", slicer.vtkSlicerMarkupsLogic), ("Tables", slicer.vtkSlicerTablesLogic),
                      ("SubjectHierarchy", slicer.vtkSlicerSubjectHierarchyModuleLogic)):
        logic = cls()
        logic.SetMRMLScene(new)
        if hasattr(logic, "SetMRMLApplicationLogic"):
            logic.SetMRMLApplicationLogic(app)
        app.SetModuleLogic(name, logic)
        logics[name] = logic
    logics["Colors"].AddDefaultColorNodes()
    slicer.mrmlScene = new
    slicer.modules = types.SimpleNamespace(**{n.lower(): _ModuleStub(l) for n, l in logics.items()})
    _LOGICS = (app, logics)  # keep the logics alive as long as the scene
    return new
