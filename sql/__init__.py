"""SQL view definitions (``*.sql``) loaded by :mod:`warehouse.sql_engine` in file-name order."""
