"""One query per DuckDB type a ``SELECT`` can produce, for the SQL surface's every-type-every-format tests.

``TYPE_QUERIES``: name -> query of one column ``x``. ``REFUSED``: queries whose value no face can carry
(a date outside the years 1-9999, a HUGEINT beyond Arrow's 38-digit decimals), which must be refused with a one-line error naming the column.
"""

from __future__ import annotations

__all__ = ["REFUSED", "TYPE_QUERIES"]

TYPE_QUERIES: dict[str, str] = {
    "boolean": "SELECT true AS x",
    "tinyint": "SELECT -1::TINYINT AS x",
    "utinyint": "SELECT 255::UTINYINT AS x",
    "integer": "SELECT 7 AS x",
    "ubigint": "SELECT 18446744073709551615::UBIGINT AS x",
    "hugeint": "SELECT 12345678901234567890123::HUGEINT AS x",
    "uhugeint": "SELECT 340282366920938463463374607431768211455::UHUGEINT AS x",
    "sum_hugeint": "SELECT sum(i) AS x FROM range(10) t(i)",
    "decimal": "SELECT 1.5 AS x",
    "decimal38": "SELECT 12345678901234567890.1234567890::DECIMAL(38,10) AS x",
    "float": "SELECT 1.25::FLOAT AS x",
    "double_nan": "SELECT 'nan'::DOUBLE AS x",
    "varchar": "SELECT 'a;b' AS x",
    "blob": "SELECT '\\xAA\\xBB'::BLOB AS x",
    "bit": "SELECT '0101'::BIT AS x",
    "uuid": "SELECT '5b0d8a7e-3c5a-4d4c-9b1e-2f8a1c0d9e7f'::UUID AS x",
    "enum": "SELECT 'b'::ENUM('a', 'b') AS x",
    "json": "SELECT '{\"a\": 1}'::JSON AS x",
    "date": "SELECT DATE '2020-01-02' AS x",
    "time": "SELECT TIME '12:34:56.789' AS x",
    "time_ns": "SELECT '12:34:56'::TIME_NS AS x",
    "timetz": "SELECT TIMETZ '12:34:56+02:00' AS x",
    "timestamp": "SELECT TIMESTAMP '2020-01-02 03:04:05.678' AS x",
    "timestamp_s": "SELECT '2020-01-02 03:04:05'::TIMESTAMP_S AS x",
    "timestamp_ms": "SELECT '2020-01-02 03:04:05'::TIMESTAMP_MS AS x",
    "timestamp_ns": "SELECT '2020-01-02 03:04:05'::TIMESTAMP_NS AS x",
    "timestamptz": "SELECT TIMESTAMPTZ '2020-01-02 03:04:05+00' AS x",
    "interval": "SELECT INTERVAL 1 DAY AS x",
    "union": "SELECT union_value(a := 1)::UNION(a INTEGER, b VARCHAR) AS x",
    "map": "SELECT MAP {'a': 1, 'b': 2} AS x",
    "map_int_keys": "SELECT MAP {1: 'a'} AS x",
    "struct": "SELECT {'a': 1, 'b': 'x'} AS x",
    "list": "SELECT [1, 2, NULL] AS x",
    "array": "SELECT [1, 2]::INTEGER[2] AS x",
    "list_of_intervals": "SELECT [INTERVAL 1 DAY] AS x",
    "struct_of_hugeint": "SELECT {'h': 1::HUGEINT} AS x",
    "bignum": "SELECT 123456789012345678901234567890123456789012345678901234567890::BIGNUM AS x",
    "null": "SELECT NULL AS x",
    "summarize": "SELECT * FROM (SUMMARIZE SELECT 1.5 AS x, INTERVAL 1 DAY AS y)",
    "empty": "SELECT 1.5 AS x WHERE false",
}

REFUSED: dict[str, str] = {
    "hugeint_39_digits": "SELECT 170141183460469231731687303715884105727::HUGEINT AS x",
    "date_infinity": "SELECT 'infinity'::DATE AS x",
    "timestamp_year_10000": "SELECT '10000-01-01'::TIMESTAMP AS x",
}
