"""Result files -> paper-style tables and figures."""

from certlight.reporting.figures import plot_margin_comparison, plot_margins
from certlight.reporting.results import Record, find_result_files, read_records
from certlight.reporting.tables import grid_table, markdown_table, mean_std

__all__ = ["Record", "find_result_files", "grid_table", "markdown_table", "mean_std", "plot_margin_comparison", "plot_margins", "read_records"]
