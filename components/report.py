from kfp.dsl import HTML, Artifact, Dataset, Input, Markdown, Output


def report(
    config: str,
    run_key: str,
    records: Input[list[Dataset]],
    confusion_counts: Input[list[Dataset]],
    quantity_records: Input[list[Dataset]],
    data: Input[Dataset],
    results: Output[Artifact],
    report_html: Output[HTML],
    report_summary: Output[Markdown],
):
    """Fan-in: summary.csv, detection.csv, report.html, report.md and manifest.json of the run."""
    import shutil

    from poisonlab import steps

    steps.report(
        config,
        [r.path for r in records],
        data.path,
        results.path,
        run_key,
        [c.path for c in confusion_counts],
        [q.path for q in quantity_records],
    )
    shutil.copyfile(f"{results.path}/report.html", report_html.path)
    shutil.copyfile(f"{results.path}/report.md", report_summary.path)
