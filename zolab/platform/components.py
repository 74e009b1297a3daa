"""The component resolver's public names, kept at their old import path.

The resolver grew into a package (:mod:`zolab.platform.resolver`: registry, value domains,
evidence scoring, readings); everything the rest of zolab imports from here is re-exported.
"""

from zolab.platform.resolver import *
from zolab.platform.resolver import __all__  # noqa: F401
