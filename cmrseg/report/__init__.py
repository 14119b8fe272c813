"""Figures and tables of results (no torch), shared by the T2* callback, the CLIs and reports."""

from cmrseg.report.agreement import (
    log_agreement_media,
    write_agreement_files,
    write_agreement_report,
)
from cmrseg.report.figures import (
    agreement_pngs,
    bland_altman_figure,
    figure_png,
    scatter_figure,
)
from cmrseg.report.patient import (
    APEX_SEGMENT_SECTORS,
    PatientReport,
    bullseye_segments,
    patient_figure,
    patient_html,
    patient_report,
    write_patient_reports,
)
from cmrseg.report.tables import (
    TABLE1_METRICS,
    csv_text,
    format_table1,
    json_number,
    table1_rows,
    write_table1,
)

__all__ = [
    "APEX_SEGMENT_SECTORS",
    "TABLE1_METRICS",
    "PatientReport",
    "agreement_pngs",
    "bland_altman_figure",
    "bullseye_segments",
    "csv_text",
    "figure_png",
    "format_table1",
    "json_number",
    "log_agreement_media",
    "patient_figure",
    "patient_html",
    "patient_report",
    "scatter_figure",
    "table1_rows",
    "write_agreement_files",
    "write_agreement_report",
    "write_patient_reports",
    "write_table1",
]
