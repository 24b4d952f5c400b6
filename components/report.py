from kfp.dsl import HTML, Artifact, Dataset, Input, Output


def report(
    config: str,
    run_key: str,
    records: Input[list[Dataset]],
    data: Input[Dataset],
    results: Output[Artifact],
    report_html: Output[HTML],
):
    """Fan-in: summary.csv, detection.csv, report.html and manifest.json for the whole run."""
    import shutil

    from poisonlab import steps

    steps.report(config, [r.path for r in records], data.path, results.path, run_key)
    shutil.copyfile(f"{results.path}/report.html", report_html.path)
