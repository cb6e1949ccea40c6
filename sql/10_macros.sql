-- Unmeasured values are stored as NaN (with a flag saying why). In SQL, NaN sorts above every number
-- and poisons max()/avg(), so the views below show them as NULL.
CREATE MACRO nan_null(x) AS CASE WHEN isnan(x) THEN NULL ELSE x END;

-- Angular separation in arcsec of (ra, dec) from (ra0, dec0), all in degrees: the haversine formula
-- (Sinnott 1984), well conditioned for small separations, periodic in RA (0 and 360 are one meridian)
-- and right near the poles, where an RA difference spans little sky.
CREATE MACRO _haversine(ra, dec, ra0, dec0) AS
    pow(sin(radians(dec - dec0) / 2), 2) + cos(radians(dec)) * cos(radians(dec0)) * pow(sin(radians(ra - ra0) / 2), 2);
-- (rounding can lift the haversine a hair above 1 near the antipode; a NULL position stays NULL)
CREATE MACRO ang_sep_arcsec(ra, dec, ra0, dec0) AS
    degrees(2 * asin(sqrt(CASE WHEN _haversine(ra, dec, ra0, dec0) > 1.0 THEN 1.0
                               ELSE _haversine(ra, dec, ra0, dec0) END))) * 3600.0;

-- Cone search: true when (ra, dec) lies within radius_arcsec of (ra0, dec0) (the circle's edge included).
-- Works on any relation with positions: WHERE cone(ra, dec, 150.1, 2.2, 30), or g.ra, g.dec in a join.
-- A galaxy without a position (NULL ra/dec, flag POSITION_UNKNOWN) is in no cone: false, never NULL.
CREATE MACRO cone(ra, dec, ra0, dec0, radius_arcsec) AS
    coalesce(ang_sep_arcsec(ra, dec, ra0, dec0) <= radius_arcsec, false);
