"""The pipeline glue: the steps that join science and storage.

One module per domain, mirroring ``dagster_project/defs/<domain>``: each reads through
:class:`warehouse.Warehouse`, calls the science in ``features`` / ``models``, and writes the rows. No
Dagster and no argparse here: the Dagster assets and the ``astrovision`` CLI both call these functions.
"""
