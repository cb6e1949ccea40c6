"""Core tables: the galaxy catalogue, the images and the registered sources."""

from __future__ import annotations

import pyarrow as pa

from warehouse.schemas import TableSpec, register

GALAXIES = register(
    TableSpec(
        name="galaxies",
        keys=("galaxy_id",),
        description="one row per galaxy: source, position, redshift, pixel scale, label, duplicate group",
        columns=pa.schema(
            [
                pa.field("galaxy_id", pa.string(), nullable=False),
                pa.field("source", pa.string(), nullable=False),
                pa.field("native_id", pa.string(), nullable=False),
                pa.field("shard", pa.string(), nullable=False),
                pa.field("row_index", pa.int64(), nullable=False),
                pa.field("ra", pa.float64()),
                pa.field("dec", pa.float64()),
                pa.field("redshift", pa.float64()),
                pa.field("pxscale", pa.float64()),
                pa.field("label", pa.int16()),
                pa.field("label_name", pa.string()),
                pa.field("extra_json", pa.string()),
                pa.field("image_sha1", pa.string(), nullable=False),
                pa.field("duplicate_group", pa.string()),
                pa.field("flags", pa.int64(), nullable=False),
            ]
        ),
    )
)

IMAGES = register(
    TableSpec(
        name="images",
        keys=("galaxy_id",),
        description="one lossless image per galaxy (PNG for uint8, NPY for float), with shape, dtype, bands",
        columns=pa.schema(
            [
                pa.field("galaxy_id", pa.string(), nullable=False),
                pa.field("shard", pa.string(), nullable=False),
                pa.field("encoding", pa.string(), nullable=False),
                pa.field("data", pa.large_binary(), nullable=False),
                pa.field("height", pa.int32(), nullable=False),
                pa.field("width", pa.int32(), nullable=False),
                pa.field("channels", pa.int32(), nullable=False),
                pa.field("dtype", pa.string(), nullable=False),
                pa.field("bands", pa.string(), nullable=False),
                pa.field("image_kind", pa.string(), nullable=False),
                pa.field("stretch_json", pa.string()),
            ]
        ),
    )
)

SOURCES = register(
    TableSpec(
        name="sources",
        keys=("source",),
        description="registered image sources by name: kind, where the data came from, its checksum, sharding",
        columns=pa.schema(
            [
                pa.field("source", pa.string(), nullable=False),  # the source's name, unique
                pa.field("kind", pa.string(), nullable=False),  # demo, galaxy10, folder
                pa.field("path", pa.string()),
                pa.field("catalog", pa.string()),
                pa.field("fingerprint", pa.string(), nullable=False),  # Source.fingerprint() of the data
                pa.field("shard_size", pa.int64(), nullable=False),
                pa.field("n_galaxies", pa.int64(), nullable=False),
                pa.field("params_json", pa.string()),
            ]
        ),
    )
)
