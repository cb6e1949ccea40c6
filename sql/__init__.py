"""SQL view definitions (``*.sql``) loaded by :mod:`warehouse.sql_engine` in file-name order.

:func:`constants` holds the values the views share with the Python code, so that each is defined once:
the engine creates each as a macro without arguments before the views (``morph_untrusted_mask()``).
"""

from __future__ import annotations

__all__ = ["constants"]


def constants() -> dict[str, int]:
    """Macro name -> integer value, created before the views (and usable in any query).

    ``morph_untrusted_mask``: :data:`features.flags.MORPH_UNTRUSTED`, the morphometrics flag bits that
    make ``galaxy_features.morph_ok`` false.
    """
    from features.flags import MORPH_UNTRUSTED

    return {"morph_untrusted_mask": int(MORPH_UNTRUSTED)}
