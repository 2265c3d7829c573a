"""Message content: YAML templates per message, channel and locale, rendered in a sandbox.

See :mod:`aftersale.content.library` for the directory layout and the render context.
"""

from aftersale.content.catalog import Catalog, Guide
from aftersale.content.library import (
    CHANNELS,
    ContentLibrary,
    UnknownTemplate,
    read_yaml,
    sample_context,
)
from aftersale.content.render import Rendered, normalize_locale

__all__ = [
    "CHANNELS",
    "Catalog",
    "ContentLibrary",
    "Guide",
    "Rendered",
    "UnknownTemplate",
    "normalize_locale",
    "read_yaml",
    "sample_context",
]
