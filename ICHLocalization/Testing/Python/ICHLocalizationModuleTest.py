"""Slicer self-test (runs inside the Slicer application): load the phantom sample, run the logic,
check that the findings lie in the bleeds."""
import json

import numpy as np
import slicer
from slicer.ScriptedLoadableModule import ScriptedLoadableModuleTest


class ICHLocalizationModuleTest(ScriptedLoadableModuleTest):
    def setUp(self):
        slicer.mrmlScene.Clear()

    def runTest(self):
        self.setUp()
        self.test_phantom_findings_lie_in_bleeds()

    def test_phantom_findings_lie_in_bleeds(self):
        from ICHLocalization import ICHLocalizationLogic

        logic = ICHLocalizationLogic()
        volumeNode = logic.loadPhantomSample()
        truth = json.loads(volumeNode.GetAttribute("ICH.truth"))
        nodes = logic.process(volumeNode, methods=("cascade", "mil", "unet"), device="cpu", waitForCompletion=True)
        self.assertIn("segmentation", nodes)
        self.assertIn("table", nodes)

        def inside(p, margin=3.0):
            return any(all(l["bbox_ras"]["min"][a] - margin <= p[a] <= l["bbox_ras"]["max"][a] + margin for a in range(3))
                       for l in truth)

        points = nodes["points"]
        positions = [points.GetNthControlPointPositionWorld(i) for i in range(points.GetNumberOfControlPoints())]
        self.assertTrue(positions, "the MIL detector found no point")
        self.assertGreaterEqual(np.mean([inside(p) for p in positions]), 0.7)
        segmentation = nodes["segmentation"].GetSegmentation()
        self.assertGreaterEqual(segmentation.GetNumberOfSegments(), 1)
        boxes = [n for k, n in nodes.items() if k.startswith("box")]
        centres = []
        for roi in boxes:
            c = [0.0, 0.0, 0.0]
            roi.GetCenterWorld(c)
            centres.append(c)
        self.assertTrue(boxes, "the cascade found no box")
        self.assertGreaterEqual(np.mean([inside(c) for c in centres]), 0.7)
        self.delayDisplay("ICH Localization self-test passed")
