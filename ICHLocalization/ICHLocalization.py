"""ICH Localization: find intracranial hemorrhage in a non-contrast head CT with one button.

Thin Slicer glue over ICHLocalizationLib (Slicer-independent): the widget reads the settings into a
parameter node, the logic runs the pipeline in a background thread (torch releases the GIL, so the
application stays responsive) and creates the output nodes on the main thread through mrml.py.
"""
import json
import logging
import os
import threading

import qt
import slicer
from slicer.ScriptedLoadableModule import (ScriptedLoadableModule, ScriptedLoadableModuleLogic,
                                           ScriptedLoadableModuleWidget)
from slicer.parameterNodeWrapper import parameterNodeWrapper
from slicer.util import VTKObservationMixin

try:
    from slicer import vtkMRMLScalarVolumeNode
except ImportError:  # older Slicer
    vtkMRMLScalarVolumeNode = slicer.vtkMRMLScalarVolumeNode

METHODS = ("cascade", "mil", "unet")
# import name → pip requirement
PYTHON_PACKAGES = {"torch": "torch", "monai": "monai>=1.3", "skimage": "scikit-image", "pydicom": "pydicom>=2.4",
                   "bayes_opt": "bayesian-optimization", "tqdm": "tqdm"}


def _importable(module):
    try:
        __import__(module)
        return True
    except ImportError:
        return False


class ICHLocalization(ScriptedLoadableModule):
    def __init__(self, parent):
        ScriptedLoadableModule.__init__(self, parent)
        self.parent.title = "ICH Localization"
        self.parent.categories = ["Radiology"]
        self.parent.dependencies = []
        self.parent.contributors = ["ICH Localization developers"]
        self.parent.helpText = """
Finds intracranial hemorrhage (ICH) in a non-contrast head CT: where it is, which subtype
(IPH, IVH, SAH, SDH, EDH) and how large. Three published methods:
<ul>
<li>Three-plane 3D localization cascade (Nemcek, Jakubicek et al.) → labeled 3D boxes (ROIs)</li>
<li>Weakly supervised MIL detector (Nemcek, Vicar, Jakubicek) → points and a likelihood map</li>
<li>U-Net segmenter (Hernández Farah &amp; Pérez Ruiz; Hssayeni et al.) → segments with volume in mL</li>
</ul>
<b>Research use only.</b> The bundled models are trained on synthetic phantoms and are not for
clinical use. See the extension's README for accuracy figures and limits.
"""
        self.parent.acknowledgementText = """
Methods after Nemcek et al. (3D localization; weakly supervised MIL), Hernández Farah and Pérez Ruiz
(CNN + U-Net), Hssayeni et al. (PhysioNet CT-ICH) and Castro et al. (slice classification).
Built on 3D Slicer, PyTorch, MONAI, SimpleITK, pydicom and scikit-image.
"""
        slicer.app.connect("startupCompleted()", registerSampleData)


def registerSampleData():
    """'ICH phantom' in the Sample Data module: generated on the spot (nothing is downloaded)."""
    try:
        import SampleData
    except ImportError:
        return
    icon = os.path.join(os.path.dirname(__file__), "Resources", "Icons", "ICHLocalization.png")
    SampleData.SampleDataLogic.registerCustomSampleDataSource(
        category="ICH Localization", sampleName="ICH phantom", uris=["phantom://7"], fileNames=["ICHPhantom7.nrrd"],
        nodeNames=["ICH phantom"], thumbnailFileName=icon, loadFiles=False,
        customDownloader=lambda *args, **kwargs: ICHLocalizationLogic().loadPhantomSample())


@parameterNodeWrapper
class ICHLocalizationParameterNode:
    inputVolume: vtkMRMLScalarVolumeNode
    runCascade: bool = True
    runMil: bool = True
    runUnet: bool = True
    device: str = "auto"
    detectorH: float = -1.0  # < 0: the model's tuned value
    detectorT: float = -1.0
    detectorD: int = -1
    overridePostprocessing: bool = False  # False: the models' tuned values
    unetThreshold: float = 0.5
    fusionCenterWeight: float = 0.5


class ICHLocalizationWidget(ScriptedLoadableModuleWidget, VTKObservationMixin):
    def __init__(self, parent=None):
        ScriptedLoadableModuleWidget.__init__(self, parent)
        VTKObservationMixin.__init__(self)
        self.logic = None
        self._parameterNode = None
        self._guiConnection = None

    def setup(self):
        ScriptedLoadableModuleWidget.setup(self)
        uiWidget = slicer.util.loadUI(self.resourcePath("UI/ICHLocalization.ui"))
        self.layout.addWidget(uiWidget)
        self.ui = slicer.util.childWidgetVariables(uiWidget)
        uiWidget.setMRMLScene(slicer.mrmlScene)
        self.logic = ICHLocalizationLogic()
        self.ui.deviceComboBox.addItems(["auto", "cpu", "cuda"])
        self.ui.deviceLabel.text = self.logic.deviceDescription()
        self.ui.warningLabel.text = ("Research use only: the bundled models are trained on synthetic phantoms "
                                     "and are not for clinical use.")
        self._fillModelChoices()
        self.ui.applyButton.connect("clicked(bool)", self.onApplyButton)
        self.ui.loadSampleButton.connect("clicked(bool)", self.onLoadSample)
        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.StartCloseEvent, self.onSceneStartClose)
        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.EndCloseEvent, self.onSceneEndClose)
        self.initializeParameterNode()

    def _fillModelChoices(self):
        combos = {"cascade": self.ui.cascadeModelComboBox, "mil": self.ui.milModelComboBox, "unet": self.ui.unetModelComboBox}
        for method, combo in combos.items():
            combo.clear()
            for entry in self.logic.models(method):
                combo.addItem(f"{entry.id} ({entry.version})", entry.id)

    def cleanup(self):
        self.removeObservers()
        if self._parameterNode and self._guiConnection:
            self._parameterNode.disconnectGui(self._guiConnection)

    def enter(self):
        self.initializeParameterNode()

    def onSceneStartClose(self, caller, event):
        self.setParameterNode(None)

    def onSceneEndClose(self, caller, event):
        if self.parent.isEntered:
            self.initializeParameterNode()

    def initializeParameterNode(self):
        self.setParameterNode(self.logic.getParameterNode())
        if not self._parameterNode.inputVolume:
            first = slicer.mrmlScene.GetFirstNodeByClass("vtkMRMLScalarVolumeNode")
            if first:
                self._parameterNode.inputVolume = first

    def setParameterNode(self, node):
        if self._parameterNode and self._guiConnection:
            self._parameterNode.disconnectGui(self._guiConnection)
        self._parameterNode = node
        if node:
            self._guiConnection = node.connectGui(self.ui)

    def onLoadSample(self):
        with slicer.util.tryWithErrorDisplay("Could not create the phantom.", waitCursor=True):
            node = self.logic.loadPhantomSample()
            self._parameterNode.inputVolume = node

    def onApplyButton(self):
        if self.logic.isRunning:
            self.logic.cancel()
            self.ui.statusLabel.text = "Cancelling…"
            return
        p = self._parameterNode
        methods = [m for m, on in zip(METHODS, (p.runCascade, p.runMil, p.runUnet)) if on]
        if not p.inputVolume or not methods:
            slicer.util.errorDisplay("Choose an input CT volume and at least one method.")
            return
        if not self.logic.ensureDependencies():
            return
        params = {}
        if p.overridePostprocessing:
            params = {"unet": {"threshold": p.unetThreshold},
                      "cascade": {"fusion": {"kernel": [(1 - p.fusionCenterWeight) / 2, p.fusionCenterWeight,
                                                        (1 - p.fusionCenterWeight) / 2], "threshold": 0.5}}}
        if p.detectorH >= 0 and p.detectorT >= 0 and p.detectorD > 0:
            params["mil"] = {"detector": {"h": p.detectorH, "T": p.detectorT, "d": p.detectorD}}
        modelIds = {m: c.currentData for m, c in (("cascade", self.ui.cascadeModelComboBox), ("mil", self.ui.milModelComboBox),
                                                  ("unet", self.ui.unetModelComboBox)) if c.currentData}
        self.ui.applyButton.text = "Cancel"
        self.ui.progressBar.value = 0
        try:
            self.logic.process(p.inputVolume, methods=methods, device=p.device, params=params, modelIds=modelIds,
                               waitForCompletion=False, progress=self.onProgress, finished=self.onFinished)
        except Exception as exc:  # noqa: BLE001 - shown to the user, nothing lost
            self.onFinished(None, exc)

    def onProgress(self, fraction, label):
        self.ui.progressBar.value = int(100 * fraction)
        self.ui.statusLabel.text = label

    def onFinished(self, nodes, error):
        self.ui.applyButton.text = "Apply"
        if error is not None:
            from ICHLocalizationLib.pipeline import Cancelled

            if isinstance(error, Cancelled):
                self.ui.statusLabel.text = "Cancelled; nothing was added to the scene"
                return
            self.ui.statusLabel.text = "Failed"
            slicer.util.errorDisplay(str(error))
            return
        self.ui.progressBar.value = 100
        self.ui.statusLabel.text = self.logic.lastSummary


class ICHLocalizationLogic(ScriptedLoadableModuleLogic):
    """Console API: `ICHLocalizationLogic().process(volumeNode, methods=("cascade", "mil", "unet"), device="auto")`
    returns the output nodes; `processFiles(paths, outputDir)` runs a batch like `ich-localize`."""

    def __init__(self):
        ScriptedLoadableModuleLogic.__init__(self)
        self._thread = None
        self._cancel = False
        self.lastSummary = ""

    def getParameterNode(self):
        return ICHLocalizationParameterNode(super().getParameterNode())

    @property
    def isRunning(self):
        return self._thread is not None and self._thread.is_alive()

    def cancel(self):
        self._cancel = True

    # --- dependencies --------------------------------------------------------------------------
    def ensureDependencies(self, askConfirmation=True):
        """torch via the PyTorch extension when present, else pip; the rest with pip, upgrading only
        what is missing, so Slicer's own numpy and SimpleITK are never replaced."""
        missing = {pkg for module, pkg in PYTHON_PACKAGES.items() if not _importable(module)}
        if not missing:
            return True
        if askConfirmation and not slicer.util.confirmOkCancelDisplay(
                f"ICH Localization needs Python packages that are not installed: {', '.join(sorted(missing))}. "
                "Install them now? (This can take several minutes.)"):
            return False
        if "torch" in missing:
            try:
                import PyTorchUtils

                PyTorchUtils.PyTorchUtilsLogic().installTorch(askConfirmation=False)
            except ImportError:
                slicer.util.pip_install("torch")
        others = sorted(missing - {"torch"})
        if others:
            slicer.util.pip_install(" ".join(others) + " --upgrade-strategy only-if-needed")
        return True

    # --- models and devices ----------------------------------------------------------------------
    def models(self, method):
        try:
            from ICHLocalizationLib.models import Catalogue

            return Catalogue.load().for_method(method)
        except Exception as exc:  # noqa: BLE001 - no catalogue: an empty choice, explained in the log
            logging.warning(f"ICH Localization: model catalogue not available: {exc}")
            return []

    def deviceDescription(self):
        try:
            from ICHLocalizationLib.models import describe_devices

            return describe_devices()
        except ImportError:
            return "PyTorch not installed yet"

    # --- processing ------------------------------------------------------------------------------
    def process(self, volumeNode, methods=METHODS, device="auto", params=None, modelIds=None,
                waitForCompletion=True, progress=None, finished=None):
        """Run the methods on a volume node. With waitForCompletion the output nodes are returned;
        otherwise the work runs in a background thread and `finished(nodes, error)` is called."""
        from ICHLocalizationLib import mrml
        from ICHLocalizationLib.io import validate_head_ct
        from ICHLocalizationLib.pipeline import Pipeline

        if self.isRunning:
            raise RuntimeError("ICH Localization is already running; cancel it or wait for it to finish")
        volume = mrml.volume_from_node(volumeNode)
        validate_head_ct(volume)
        pipeline = Pipeline(methods, model_ids=modelIds, device=device, params=params, log=logging.info)
        self._cancel = False
        state = {"results": None, "error": None, "progress": (0.0, "starting")}

        def work():
            try:
                state["results"] = pipeline.run(volume, progress=lambda f, l: state.__setitem__("progress", (f, l)),
                                                cancelled=lambda: self._cancel)
            except Exception as exc:  # noqa: BLE001 - reported on the main thread
                state["error"] = exc

        def createNodes():
            if state["error"] is not None:
                return None
            results = state["results"]
            results.input = volumeNode.GetName()
            nodes = mrml.results_to_nodes(results, volumeNode)
            from ICHLocalizationLib.report import summary_line

            self.lastSummary = summary_line(results)
            return nodes

        if waitForCompletion:
            work()
            if state["error"] is not None:
                raise state["error"]
            return createNodes()
        self._thread = threading.Thread(target=work, daemon=True)
        self._thread.start()
        timer = qt.QTimer()
        timer.setInterval(200)

        def poll():
            if progress:
                progress(*state["progress"])
            if self._thread.is_alive():
                return
            timer.stop()
            try:
                nodes = createNodes()
                if finished:
                    finished(nodes, state["error"])
            except Exception as exc:  # noqa: BLE001
                if finished:
                    finished(None, exc)

        timer.connect("timeout()", poll)
        timer.start()
        self._timer = timer  # keep a reference while it runs
        return None

    def processFiles(self, paths, outputDir, methods=METHODS, device="auto", overwrite=False):
        """Batch: the same per-scan folders and summary.csv as `ich-localize`."""
        from ICHLocalizationLib import cli

        args = [*map(str, paths), "--out", str(outputDir), "--methods", ",".join(methods), "--device", device]
        if overwrite:
            args.append("--overwrite")
        return cli.main(args)

    def loadPhantomSample(self, seed=7):
        """Generate the 'ICH phantom' sample (seed 7: all five subtypes) and load it as a volume node."""
        from ICHLocalizationLib import mrml
        from ICHLocalizationLib.phantom import generate

        ph = generate(seed, subtypes=["IPH", "IVH", "SAH", "SDH", "EDH"])
        node = mrml.volume_to_node(ph.volume, name="ICH phantom")
        node.SetAttribute("ICH.truth", json.dumps(ph.truth()["lesions"]))
        slicer.util.setSliceViewerLayers(background=node, fit=True)
        display = node.GetDisplayNode()
        if display:
            display.SetAutoWindowLevel(False)
            display.SetWindowLevel(80, 40)
        return node
