"""``astrovision export``: tables, views and queries to VOTable, FITS, Parquet or CSV with units and UCDs.

One module per job: :mod:`~stages.export.columns` (a column's fixed-width layout),
:mod:`~stages.export.fits`, :mod:`~stages.export.votable`, :mod:`~stages.export.parquet`,
:mod:`~stages.export.ecsv` (one streaming writer each), :mod:`~stages.export.job` (profile, stream,
temporary file and rename, progress).
"""

from stages.export.job import FORMATS, ExportResult, export, write_rows

__all__ = ["FORMATS", "ExportResult", "export", "write_rows"]
