from kfp.dsl import HTML, Artifact, Dataset, Input, Markdown, Output


def report(
    config: str,
    run_key: str,
    level_results: Input[list[Dataset]],
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
        [level.path for level in level_results],
        data.path,
        results.path,
        run_key,
    )
    shutil.copyfile(f"{results.path}/report.html", report_html.path)
    shutil.copyfile(f"{results.path}/report.md", report_summary.path)
