"""ICH Training: train, tune and evaluate the ICH Localization models from Slicer.

Thin glue over ICHTrainingLib (the same code as `ich-train`): training runs in a separate process
(`ich-train` run by Slicer's Python, through ICHLocalizationLib.batch) so Slicer stays responsive;
its per-epoch log drives the progress bar and a live loss/validation plot; the trained model can be
registered in the model catalogue and is then offered in the ICH Localization module.
"""
import json
import logging
import os
import pathlib
from typing import Annotated

import qt
import slicer
from slicer.parameterNodeWrapper import Choice, WithinRange, parameterNodeWrapper
from slicer.ScriptedLoadableModule import (ScriptedLoadableModule, ScriptedLoadableModuleLogic,
                                           ScriptedLoadableModuleTest, ScriptedLoadableModuleWidget)

from ICHLocalizationLib.extension import describe_module
from ICHTrainingLib.datasets import DATASET_KINDS  # numpy only: safe to import before torch is installed


HELP_TEXT = """
Train the ICH Localization models (cascade, MIL detector, U-Net) on synthetic phantoms or real scans
(PhysioNet CT-ICH as JPG pairs, PHE-SICH-CT-IDS, CT-ICH NIfTI, RSNA 2019), with progress, cancel and
a live loss plot. A trained model can be registered in the catalogue and chosen in ICH Localization.
"""


class ICHTraining(ScriptedLoadableModule):
    def __init__(self, parent):
        ScriptedLoadableModule.__init__(self, parent)
        describe_module(self.parent, "ICH Training", HELP_TEXT)


@parameterNodeWrapper
class ICHTrainingParameterNode:
    dataset: Annotated[str, Choice(list(DATASET_KINDS))] = "phantom"
    dataFolder: pathlib.Path
    phantomSeeds: str = "1-120"
    method: Annotated[str, Choice(["mil", "unet", "cascade"])] = "mil"
    epochs: Annotated[int, WithinRange(1, 500)] = 10
    device: Annotated[str, Choice(["auto", "cpu", "cuda"])] = "auto"
    outputFolder: pathlib.Path


class ICHTrainingWidget(ScriptedLoadableModuleWidget):
    def setup(self):
        ScriptedLoadableModuleWidget.setup(self)
        uiWidget = slicer.util.loadUI(self.resourcePath("UI/ICHTraining.ui"))
        self.layout.addWidget(uiWidget)
        self.ui = slicer.util.childWidgetVariables(uiWidget)
        self.logic = ICHTrainingLogic()
        self._parameterNode = self.logic.getParameterNode()
        self._guiConnection = self._parameterNode.connectGui(self.ui)
        self.ui.startButton.connect("clicked(bool)", self.onStart)
        self.ui.registerButton.connect("clicked(bool)", self.onRegister)

    def cleanup(self):
        if self._parameterNode and self._guiConnection:
            self._parameterNode.disconnectGui(self._guiConnection)

    def onStart(self):
        if self.logic.isRunning:
            self.logic.cancel()
            return
        p = self._parameterNode
        with slicer.util.tryWithErrorDisplay("Could not start training.", waitCursor=True):
            self.logic.start(p.method, self.logic.dataSpec(p.dataset, p.dataFolder, p.phantomSeeds),
                             _chosen(p.outputFolder, "an output folder"), epochs=p.epochs, device=p.device,
                             onEpoch=self.onEpoch, onFinished=self.onFinished)
            self.ui.startButton.text = "Cancel"

    def onEpoch(self, entry):
        self.ui.progressBar.value = int(100 * entry["epoch"] / entry["epochs"])
        self.ui.statusLabel.text = f"{entry['name']} epoch {entry['epoch']}/{entry['epochs']}: loss {entry['loss']:.4g}{entry['rest']}"

    def onFinished(self, exitCode, message):
        self.ui.startButton.text = "Start training"
        self.ui.statusLabel.text = message
        if exitCode != 0:
            slicer.util.errorDisplay(message)

    def onRegister(self):
        with slicer.util.tryWithErrorDisplay("Could not register the model.", waitCursor=True):
            entry = self.logic.registerLastModel()
            self.ui.statusLabel.text = f"Registered {entry.id}; choose it in ICH Localization."


def _chosen(path, what):
    """A path field left empty reads back as Path('.'): refuse it rather than write into the working folder."""
    if str(path) in ("", "."):
        raise ValueError(f"choose {what} first")
    return str(path)


class ICHTrainingLogic(ScriptedLoadableModuleLogic):
    """Runs `ich-train` in a background process; parses its epoch lines into a plot."""

    def __init__(self):
        ScriptedLoadableModuleLogic.__init__(self)
        self.process = None
        self.history = []
        self.outputDir = None
        self.chartNode = None
        self._plotNodes = {}  # chart, table and series nodes, reused by each update (slicer.util.plot)
        self._timer = None

    def getParameterNode(self):
        return ICHTrainingParameterNode(super().getParameterNode())

    @property
    def isRunning(self):
        return self.process is not None and self.process.returncode is None

    @staticmethod
    def dataSpec(dataset, dataFolder, phantomSeeds):
        """The --data of `ich-train`: phantom:SEEDS, or KIND:FOLDER for a real dataset."""
        from ICHTrainingLib.datasets import folder_spec

        return f"phantom:{phantomSeeds}" if dataset == "phantom" else folder_spec(dataset, _chosen(dataFolder, "the dataset folder"))

    @staticmethod
    def arguments(method, dataSpec, outputDir, epochs=10, device="auto", extra=()):
        """`ich-train`'s arguments (the model card records them); its cache lives in the run folder."""
        return [method, "--data", dataSpec, "--out", outputDir, "--cache", os.path.join(outputDir, "cache"),
                "--epochs", str(epochs), "--device", device, *extra]

    def start(self, method, dataSpec, outputDir, epochs=10, device="auto", onEpoch=None, onFinished=None, extra=()):
        """`ich-train` in a separate process; each epoch line updates the plot and calls onEpoch(entry)
        on the main thread, then onFinished(exitCode, message)."""
        from ICHLocalizationLib.batch import ChildProcess
        from ICHTrainingLib.loop import parse_epoch_line

        if self.isRunning:
            raise RuntimeError("a training run is already going; cancel it first")
        self.history, self.outputDir, seen = [], outputDir, [0]
        env = {"CUDA_VISIBLE_DEVICES": ""} if device == "cpu" else {}
        self.process = ChildProcess("ICHTrainingLib.cli", self.arguments(method, dataSpec, outputDir, epochs, device, extra),
                                    env=env, python_path=[os.path.dirname(os.path.abspath(__file__))])

        def poll():
            lines = self.process.lines[seen[0]:]
            seen[0] += len(lines)
            for entry in filter(None, map(parse_epoch_line, lines)):
                self.history.append(entry)
                self.updatePlot()
                if onEpoch:
                    onEpoch(entry)
            code = self.process.returncode
            if code is None:
                return
            self._timer.stop()
            logging.info("\n".join(self.process.lines[-20:]))
            if onFinished:
                onFinished(code, "Training finished." if code == 0 else f"Training stopped (exit {code}); "
                           "see the Python console for its log")

        self._timer = qt.QTimer()
        self._timer.setInterval(500)
        self._timer.connect("timeout()", poll)
        self._timer.start()

    def cancel(self):
        """Like Ctrl+C in a shell: the run stops; its last checkpoint stays for --resume."""
        if self.isRunning:
            self.process.cancel()

    def updatePlot(self):
        """Loss and validation metrics per epoch in a Slicer plot chart."""
        import numpy as np

        if not self.history:
            return
        keys = ["loss"] + sorted({k for e in self.history for k in e["metrics"]})
        rows = np.array([[e["epoch"]] + [e["metrics"].get(k, e.get(k, np.nan)) if k != "loss" else e["loss"] for k in keys]
                         for e in self.history], dtype=float)
        self.chartNode = slicer.util.plot(rows, xColumnIndex=0, columnNames=["epoch"] + keys, title="ICH training",
                                          nodes=self._plotNodes, show=slicer.app.layoutManager() is not None)

    def registerLastModel(self, modelsDir=None):
        from ICHLocalizationLib.models import ModelEntry, file_sha256, models_dir
        from ICHTrainingLib.cli import register

        cards = sorted(p for p in os.listdir(self.outputDir or ".") if p.endswith(".card.json"))
        if not cards:
            raise RuntimeError("no trained model in the output folder yet")
        card = json.loads(open(os.path.join(self.outputDir, cards[-1])).read())
        entry_json = os.path.join(self.outputDir, "entry.json")
        entry = ModelEntry(**{k: v for k, v in json.loads(open(entry_json).read()).items()
                              if k in ModelEntry.__dataclass_fields__})
        if entry.files["weights"]["sha256"] != file_sha256(os.path.join(self.outputDir, card["file"])):
            raise RuntimeError("the weights file changed after training; retrain")
        return register(models_dir(modelsDir), entry, self.outputDir)


class ICHTrainingTest(ScriptedLoadableModuleTest):
    """Slicer's self-test: a short MIL training on two phantoms in the background, watched through
    its epoch lines, ends with weights, a model card and a plotted epoch."""

    def setUp(self):
        slicer.mrmlScene.Clear()

    def runTest(self):
        self.setUp()
        self.test_training_runs_in_the_background_and_writes_a_model()

    def test_training_runs_in_the_background_and_writes_a_model(self):
        import tempfile
        import time

        logic = ICHTrainingLogic()
        outputDir = tempfile.mkdtemp(prefix="ICHTrainingTest-")
        finished, epochs = [], []
        logic.start("mil", "phantom:1-2", outputDir, epochs=1, device="cpu", onEpoch=epochs.append,
                    onFinished=lambda code, message: finished.append(code), extra=["--max-batches", "2", "--batch-size", "4"])
        deadline = time.monotonic() + 600
        while not finished and time.monotonic() < deadline:
            slicer.app.processEvents()
            time.sleep(0.1)
        self.assertEqual(finished, [0], "\n".join(logic.process.lines[-10:]))
        self.assertEqual([e["epoch"] for e in epochs], [1])
        names = os.listdir(outputDir)
        self.assertTrue(any(n.endswith(".card.json") for n in names) and "entry.json" in names, names)
        self.assertIsNotNone(logic.chartNode)
        self.delayDisplay("ICH Training: a background run wrote its model")
