"""hfsmri.report: the self-contained HTML report (``OUTPUT_DIR/report.html``) and its TSV/PNG files.

``build_report(output_dir)`` reads whatever results exist (see :mod:`hfsmri.report.collect`) and
writes ``report.html`` plus ``OUTPUT_DIR/report/`` (figures as PNG, every number as TSV).
"""
from .build import build_report

__all__ = ["build_report"]
