"""ICH Training: train, tune and evaluate the ICH Localization models from Slicer.

Thin glue over ICHTrainingLib (the same code as `ich-train`): training runs in a background process
(`ich-train` through qt.QProcess) so Slicer stays responsive; its per-epoch log drives the progress
bar and a live loss/validation plot; the trained model can be registered in the model catalogue and
is then offered in the ICH Localization module.
"""
import json
import os
import sys

import qt
import slicer
from slicer.ScriptedLoadableModule import (ScriptedLoadableModule, ScriptedLoadableModuleLogic,
                                           ScriptedLoadableModuleWidget)

class ICHTraining(ScriptedLoadableModule):
    def __init__(self, parent):
        ScriptedLoadableModule.__init__(self, parent)
        self.parent.title = "ICH Training"
        self.parent.categories = ["Radiology"]
        self.parent.dependencies = []
        self.parent.contributors = ["ICH Localization developers"]
        self.parent.helpText = """
Train the ICH Localization models (cascade, MIL detector, U-Net) on a dataset folder (phantom,
PhysioNet CT-ICH, RSNA 2019, CQ500 with BHX boxes), with progress, cancel and a live loss plot.
A trained model can be registered in the catalogue and chosen in ICH Localization.
"""
        self.parent.acknowledgementText = "Part of the ICH Localization extension."


class ICHTrainingWidget(ScriptedLoadableModuleWidget):
    def setup(self):
        ScriptedLoadableModuleWidget.setup(self)
        uiWidget = slicer.util.loadUI(self.resourcePath("UI/ICHTraining.ui"))
        self.layout.addWidget(uiWidget)
        self.ui = slicer.util.childWidgetVariables(uiWidget)
        self.logic = ICHTrainingLogic()
        self.ui.datasetComboBox.addItems(["phantom", "ctich", "rsna", "cq500"])
        self.ui.methodComboBox.addItems(["mil", "unet", "cascade"])
        self.ui.deviceComboBox.addItems(["auto", "cpu", "cuda"])
        self.ui.startButton.connect("clicked(bool)", self.onStart)
        self.ui.registerButton.connect("clicked(bool)", self.onRegister)

    def onStart(self):
        if self.logic.isRunning:
            self.logic.cancel()
            return
        spec = self.ui.datasetComboBox.currentText
        spec += ":" + (self.ui.dataPathLineEdit.currentPath if spec != "phantom" else self.ui.seedsLineEdit.text)
        self.ui.startButton.text = "Cancel"
        with slicer.util.tryWithErrorDisplay("Could not start training.", waitCursor=True):
            self.logic.start(self.ui.methodComboBox.currentText, spec, self.ui.outputPathLineEdit.currentPath,
                             epochs=self.ui.epochsSpinBox.value, device=self.ui.deviceComboBox.currentText,
                             onEpoch=self.onEpoch, onFinished=self.onFinished)

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


class ICHTrainingLogic(ScriptedLoadableModuleLogic):
    """Runs `ich-train` in a background process; parses its epoch lines into a plot."""

    def __init__(self):
        ScriptedLoadableModuleLogic.__init__(self)
        self.process = None
        self.history = []
        self.outputDir = None
        self.chartNode = None

    @property
    def isRunning(self):
        return self.process is not None and self.process.state() != qt.QProcess.NotRunning

    def command(self, method, dataSpec, outputDir, epochs=10, device="auto"):
        """The exact `ich-train` command line (also what the model card records)."""
        return [sys.executable, "-m", "ICHTrainingLib.cli", method, "--data", dataSpec, "--out", outputDir,
                "--epochs", str(epochs), "--device", device]

    def start(self, method, dataSpec, outputDir, epochs=10, device="auto", onEpoch=None, onFinished=None):
        if not outputDir:
            raise ValueError("choose an output folder for the training run")
        self.history, self.outputDir = [], outputDir
        cmd = self.command(method, dataSpec, outputDir, epochs, device)
        proc = qt.QProcess()
        env = qt.QProcessEnvironment.systemEnvironment()
        env.insert("PYTHONPATH", os.pathsep.join(p for p in sys.path if p))
        if device == "cpu":
            env.insert("CUDA_VISIBLE_DEVICES", "")
        proc.setProcessEnvironment(env)
        proc.setProcessChannelMode(qt.QProcess.MergedChannels)

        from ICHTrainingLib.train import parse_epoch_line

        def readOutput():
            text = bytes(proc.readAllStandardOutput()).decode(errors="replace")
            for line in text.splitlines():
                entry = parse_epoch_line(line)
                if entry:
                    self.history.append(entry)
                    self.updatePlot()
                    if onEpoch:
                        onEpoch(entry)

        def done(exitCode, exitStatus=None):
            if onFinished:
                onFinished(exitCode, "Training finished." if exitCode == 0 else f"Training stopped (exit {exitCode}); "
                           "see the Python console for its log")

        proc.connect("readyReadStandardOutput()", readOutput)
        proc.connect("finished(int,QProcess::ExitStatus)", done)
        proc.start(cmd[0], cmd[1:])
        self.process = proc

    def cancel(self):
        if self.isRunning:
            self.process.kill()

    def updatePlot(self):
        """Loss and validation metrics per epoch in a Slicer plot chart."""
        import numpy as np

        if not self.history:
            return
        keys = ["loss"] + sorted({k for e in self.history for k in e["metrics"]})
        rows = np.array([[e["epoch"]] + [e["metrics"].get(k, e.get(k, np.nan)) if k != "loss" else e["loss"] for k in keys]
                         for e in self.history], dtype=float)
        self.chartNode = slicer.util.plot(rows, xColumnIndex=0, columnNames=["epoch"] + keys, title="ICH training",
                                          chartNode=self.chartNode, show=True)

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
