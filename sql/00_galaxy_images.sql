-- One row per galaxy with its image metadata (not the bytes).
CREATE VIEW galaxy_images AS
SELECT g.galaxy_id, g.source, g.native_id, g.shard, g.ra, g.dec, g.redshift, g.pxscale,
       g.label, g.label_name, g.duplicate_group, g.flags,
       i.height, i.width, i.channels, i.dtype, i.bands, i.image_kind, i.encoding,
       octet_length(i.data) AS image_bytes
FROM galaxies g LEFT JOIN images i USING (galaxy_id);
