"""The report: figures, tables and sentences built from the study tables, and the renderer that turns
``report/report.qmd`` into one self-contained HTML page."""
