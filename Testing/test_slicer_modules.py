"""Both modules in Slicer's own code: the panels load and bind through Slicer's parameterNodeWrapper
connectors, every bound field round-trips GUI ↔ parameter node, the Sample Data source is accepted by
Slicer's SampleData and loads the phantom, and "Reload and Test" finds and runs the Test classes.
Skips cleanly without ../shared/slicer/upstream (Slicer's Python) or slicer-core."""
import pathlib

import pytest

from slicer_app import UPSTREAM

if not UPSTREAM.exists():
    pytest.skip(f"Slicer's Python not present: {UPSTREAM}", allow_module_level=True)
pytest.importorskip("slicer")


@pytest.fixture(scope="module")
def slicer():
    import slicer_app

    yield slicer_app.start()
    slicer_app.stop()


@pytest.fixture(scope="module")
def localization(slicer):
    import slicer_app

    return slicer_app.load_module("ICHLocalization")


@pytest.fixture(scope="module")
def training(slicer):
    import slicer_app

    return slicer_app.load_module("ICHTraining")


def _bound_widgets(widget):
    return {w.property("SlicerParameterName"): w for w in widget.ui.__dict__.values()
            if w.property("SlicerParameterName")}


def test_both_modules_replace_the_template_texts_with_the_extensions(localization, training, slicer):
    """Slicer's ScriptedLoadableModule puts a template's contributors and acknowledgement in place;
    each module lists itself under Radiology with its own title and help, and the extension's credits."""
    for name, title in (("ichlocalization", "ICH Localization"), ("ichtraining", "ICH Training")):
        parent = getattr(slicer.modules, name)
        assert parent.title == title and parent.categories == ["Radiology"]
        assert parent.contributors == ["ICH Localization developers"]
        assert "PhysioNet CT-ICH" in parent.acknowledgementText and "NA-MIC" not in parent.acknowledgementText
        assert "template" not in parent.helpText and title.split()[1].lower()[:5] in parent.helpText.lower()


def test_localization_panel_binds_every_field_with_the_ui_ranges(localization):
    parameters = localization._parameterNode
    widgets = _bound_widgets(localization)
    assert set(widgets) == set(parameters.allParameters.keys())
    assert [localization.ui.deviceComboBox.itemText(i).split()[0] for i in range(3)] == ["auto", "cpu", "cuda"]
    assert (widgets["unetThreshold"].minimum, widgets["unetThreshold"].maximum) == (0.05, 0.95)
    assert (widgets["fusionCenterWeight"].minimum, widgets["fusionCenterWeight"].maximum) == (0.2, 1.0)
    assert (widgets["detectorH"].minimum, widgets["detectorH"].maximum) == (-1.0, 2.0)
    assert (widgets["detectorD"].minimum, widgets["detectorD"].maximum) == (-1, 100)


def test_localization_fields_round_trip(localization, slicer):
    import numpy as np

    from ICHLocalizationLib import mrml
    from ICHLocalizationLib.volume import CTVolume

    p, ui = localization._parameterNode, localization.ui
    ui.milCheckBox.checked = False
    assert p.runMil is False
    p.runMil = True
    assert ui.milCheckBox.checked is True
    ui.deviceComboBox.currentIndex = 1
    assert p.device == "cpu"
    p.device = "auto"
    assert ui.deviceComboBox.currentIndex == 0
    ui.unetThresholdSliderWidget.value = 0.35
    assert p.unetThreshold == pytest.approx(0.35)
    p.fusionCenterWeight = 0.8
    assert ui.fusionCenterWeightSliderWidget.value == pytest.approx(0.8)
    ui.detectorDSpinBox.value = 12
    assert p.detectorD == 12
    p.detectorH = 0.25
    assert ui.detectorHSpinBox.value == pytest.approx(0.25)
    ui.overridePostprocessingCheckBox.checked = True
    assert p.overridePostprocessing is True
    node = mrml.volume_to_node(CTVolume(np.zeros((2, 40, 40), np.float32), np.eye(4), name="ct"))
    ui.inputSelector.setCurrentNode(node)
    assert p.inputVolume is node
    p.inputVolume = None
    assert ui.inputSelector.currentNode() is None


def test_training_panel_binds_and_offers_only_datasets_the_trainer_reads(training):
    from ICHTrainingLib.datasets import DATASET_KINDS

    p, ui = training._parameterNode, training.ui
    assert set(_bound_widgets(training)) == set(p.allParameters.keys())
    offered = [ui.datasetComboBox.itemText(i) for i in range(ui.datasetComboBox.count)]
    assert offered == list(DATASET_KINDS)
    ui.methodComboBox.currentIndex = 1
    assert p.method == "unet"
    ui.outputPathLineEdit.currentPath = "/tmp/run"
    assert p.outputFolder == pathlib.Path("/tmp/run")
    p.epochs = 3
    assert ui.epochsSpinBox.value == 3
    assert training.logic.dataSpec(p.dataset, p.dataFolder, p.phantomSeeds) == "phantom:1-120"
    with pytest.raises(ValueError, match="dataset folder"):
        training.logic.dataSpec("ctich", p.dataFolder, "")  # the empty path field reads back as "."
    args = training.logic.arguments("unet", "phantom:1-2", "/tmp/run", epochs=3)
    from ICHTrainingLib.cli import train_parser

    parsed = train_parser().parse_args(args)
    assert (parsed.method, parsed.epochs, parsed.cache) == ("unet", 3, "/tmp/run/cache")


def test_sample_data_accepts_our_source_and_loads_the_phantom(localization, slicer):
    import json

    import SampleData

    slicer.app.startupCompleted.emit()  # the module registers its sample then
    source = SampleData.SampleDataLogic().sourceForSampleName("ICH phantom")
    assert source is not None and "ICH Localization" in slicer.modules.sampleDataSources
    node = source.customDownloader(source)  # what the Sample Data button calls
    assert node.IsA("vtkMRMLScalarVolumeNode") and node.GetImageData().GetDimensions() == (512, 512, 32)
    assert {l["subtype"] for l in json.loads(node.GetAttribute("ICH.truth"))} == {"IPH", "IVH", "SAH", "SDH", "EDH"}


def test_reload_and_test_finds_and_passes_both_test_classes(localization, training, slicer):
    """slicer.selfTests is what "Reload and Test" runs: Slicer's runTest looks up <Module>Test."""
    slicer.selfTests["ICHTraining"](msec=0)
    slicer.selfTests["ICHLocalization"](msec=0)


def test_the_batch_runs_in_another_process_and_leaves_the_scene_alone(localization, slicer, tmp_path):
    import slicer_app

    from ICHLocalizationLib.phantom import generate, write_phantom

    write_phantom(generate(11, size=128, slices=10), tmp_path / "a", "nifti")
    (tmp_path / "broken.nii.gz").write_bytes(b"\x1f\x8b\x08")
    nodes_before = slicer.mrmlScene.GetNumberOfNodes()
    finished, fractions = [], []
    logic = localization.logic
    batch = logic.processFiles([tmp_path / "a" / "ct.nii.gz", tmp_path / "broken.nii.gz"], tmp_path / "out",
                               methods=("mil",), device="cpu", progress=lambda f, line: fractions.append(f),
                               finished=finished.append)
    slicer_app.run_events_until(lambda: finished, timeout_s=600)
    assert finished == [1], batch.lines[-5:]  # one scan failed: ich-localize's exit status
    assert (tmp_path / "out" / "ct" / "findings.json").exists()
    assert slicer.mrmlScene.GetNumberOfNodes() == nodes_before
    assert fractions[-1] == 1.0


def test_apply_writes_dicom_seg_and_report_for_a_volume_from_the_dicom_database(localization, slicer, tmp_path,
                                                                                  monkeypatch):
    """The checkbox path: a volume loaded by Slicer's DICOM module (DICOM.instanceUIDs, looked up in the
    DICOM database) gets a SEG and an SR referencing its files; a volume from a file is refused."""
    import types

    import pydicom
    import slicer_app

    from ICHLocalizationLib import mrml
    from ICHLocalizationLib.io import read_volume
    from ICHLocalizationLib.phantom import generate, write_dicom_series
    from ICHLocalizationLib.volume import InputError

    write_dicom_series(generate(31, subtypes=["IPH", "SDH"], size=256, slices=24), tmp_path / "series")
    files = {pydicom.dcmread(str(f), stop_before_pixels=True).SOPInstanceUID: str(f) for f in (tmp_path / "series").iterdir()}
    node = mrml.volume_to_node(read_volume(tmp_path / "series"), name="CT head")
    node.SetAttribute("DICOM.instanceUIDs", " ".join(sorted(files)))  # any order: matched by position
    monkeypatch.setattr(slicer, "dicomDatabase", types.SimpleNamespace(fileForInstance=lambda uid: files.get(uid, "")),
                        raising=False)
    monkeypatch.setattr(slicer.app, "defaultScenePath", str(tmp_path / "scenes"), raising=False)
    localization.enter()  # as opening the module does (a self-test before may have closed the scene)
    p, ui = localization._parameterNode, localization.ui
    p.inputVolume = node
    p.runCascade, p.runMil, p.runUnet, p.device = False, False, True, "cpu"
    ui.writeDicomCheckBox.checked = True
    assert p.writeDicom is True
    ui.applyButton.clicked.emit()
    slicer_app.run_events_until(lambda: ui.applyButton.text == "Apply", timeout_s=600)
    written = localization.logic.lastDicomFiles
    assert set(written) == {"segmentation", "report"}, ui.statusLabel.text
    assert "DICOM SEG and SR written to" in ui.statusLabel.text
    assert written["report"].parent.parent == tmp_path / "scenes" / "ICH-DICOM"
    seg = pydicom.dcmread(str(written["segmentation"]))
    referenced = {i.ReferencedSOPInstanceUID for s in seg.ReferencedSeriesSequence for i in s.ReferencedInstanceSequence}
    assert referenced and referenced <= set(files)
    assert "Subdural hemorrhage" in {s.SegmentLabel for s in seg.SegmentSequence}

    plain = mrml.volume_to_node(read_volume(tmp_path / "series"), name="from a file")
    with pytest.raises(InputError, match="not loaded from the DICOM database"):
        localization.logic.process(plain, methods=("unet",), device="cpu", dicomOutputDir=tmp_path / "x")

    from ICHLocalizationLib import dicom_export

    def refuse(results, folder):
        raise OSError("No space left on device")

    monkeypatch.setattr(dicom_export, "write_dicom", refuse)
    segmentations = slicer.mrmlScene.GetNodesByClass("vtkMRMLSegmentationNode").GetNumberOfItems()
    ui.applyButton.clicked.emit()
    slicer_app.run_events_until(lambda: ui.applyButton.text == "Apply", timeout_s=600)
    assert localization.logic.lastDicomError == "OSError: No space left on device" and not localization.logic.lastDicomFiles
    assert ui.statusLabel.text.endswith("No DICOM output: OSError: No space left on device")
    assert slicer.mrmlScene.GetNodesByClass("vtkMRMLSegmentationNode").GetNumberOfItems() == segmentations + 1, \
        "the findings still reach the scene"
    p.writeDicom = False


def test_apply_on_a_volume_that_is_no_head_ct_says_why_and_adds_nothing(localization, slicer, caplog):
    """The Apply button on a constant volume: the one-line reason in Slicer's error display (logged in
    testing mode), 'Failed' in the panel, and no node added to the scene."""
    import numpy as np
    import slicer_app

    from ICHLocalizationLib import mrml
    from ICHLocalizationLib.volume import CTVolume

    blank = CTVolume(np.full((12, 64, 64), -1000.0, np.float32), np.diag([0.5, 0.5, 5.0, 1.0]), name="blank")
    node = mrml.volume_to_node(blank, name="blank")
    localization.enter()
    p, ui = localization._parameterNode, localization.ui
    p.inputVolume, p.writeDicom = node, False
    p.runCascade, p.runMil, p.runUnet, p.device = False, True, False, "cpu"
    before = slicer.mrmlScene.GetNumberOfNodes()
    ui.applyButton.clicked.emit()
    slicer_app.run_events_until(lambda: ui.applyButton.text == "Apply", timeout_s=600)
    assert ui.statusLabel.text == "Failed"
    assert any(r.levelname == "ERROR" and "constant volume (every voxel -1000)" in r.getMessage() for r in caplog.records)
    assert slicer.mrmlScene.GetNumberOfNodes() == before
