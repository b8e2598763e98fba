"""`mnist-dist report`: tables, plots and one self-contained HTML page over every
sweep and training run in a results folder. Entry point: `build_report`."""
from .build import NothingToReport, Report, build_report

__all__ = ["NothingToReport", "Report", "build_report"]
