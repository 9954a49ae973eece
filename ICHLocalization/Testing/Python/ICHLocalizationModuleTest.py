"""ctest entry for the module's self-test (the same class "Reload and Test" runs): the phantom sample
through the logic in the background, findings checked against its truth, and a cancel mid-run."""
from ICHLocalization import ICHLocalizationTest


class ICHLocalizationModuleTest(ICHLocalizationTest):
    pass
