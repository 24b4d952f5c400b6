"""The names of the files in a run's results directory.

A module of its own, importing nothing, so that readers of a results directory
(``poisonlab.gcs``, ``poisonlab.mirror``) need not import the report that
writes it (the report imports the experiment, which imports the data loader,
which imports ``poisonlab.gcs``).
"""

SUMMARY_FILE = "summary.csv"
DETECTION_FILE = "detection.csv"
GATE_FILE = "gate.csv"
REPORT_FILE = "report.html"
MARKDOWN_FILE = "report.md"
MANIFEST_FILE = "manifest.json"


def optional_files() -> tuple[str, ...]:
    """The results only some runs write (a certified model's, the quantity experiment's):
    where a directory is used again, an earlier run's must not pass for this one's."""
    from poisonlab.certify.evaluation import CERTIFIED_FILE
    from poisonlab.quantity import QUANTITY_FILE

    return (CERTIFIED_FILE, QUANTITY_FILE)
