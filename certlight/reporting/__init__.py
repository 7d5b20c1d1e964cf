"""Result files -> paper-style tables and figures."""

from certlight.reporting.figures import plot_margin_comparison, plot_margins, plot_seed_comparison
from certlight.reporting.results import Record, find_result_files, read_records
from certlight.reporting.tables import SeedRow, grid_table, markdown_table, mean_std, seed_rows

__all__ = [
    "Record",
    "SeedRow",
    "find_result_files",
    "grid_table",
    "markdown_table",
    "mean_std",
    "plot_margin_comparison",
    "plot_margins",
    "plot_seed_comparison",
    "read_records",
    "seed_rows",
]
