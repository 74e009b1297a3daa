"""Component resolver: what an ablation's free text means for the runner's config.

An ablation says *what* to ablate in words ("memory-efficient in-place operation", "Number of
sampled z's"). :func:`resolve` reads it against every registered component (the DESIGN.md
"Components" table, :mod:`.registry`): how strongly its words name each one and how well each
replacement value fits each component's value domain (:mod:`.domains`, :mod:`.methods`), then
picks the reading the evidence supports (:mod:`.resolve`) and says why in one sentence. It never
guesses silently:

* ``resolved``   the changes are run against the baseline;
* ``inverted``   REMOVE of an option the baseline does not use but the method offers (PEFT,
  non-differentiable objectives): the contrast is run the other way round;
* ``no_op``      the change leaves the baseline unchanged (nothing to run);
* ``ambiguous``  two readings compete within a margin: not run; the candidates are listed;
* ``unresolved`` nothing reads it well enough, or its reading cannot run (REMOVE of eps, a value out
  of range, a knob zolab does not have): not run; the reason and the candidates are listed.

One unreadable ablation never refuses a plan: only its own status says so.
"""

from zolab.platform.resolver.readings import METHOD_NAMES, Reading, change_label
from zolab.platform.resolver.registry import COMPONENTS, SETTABLE, Component
from zolab.platform.resolver.resolve import (
    MARGIN,
    NOT_RUN,
    RUNNABLE,
    STATUSES,
    THRESHOLD,
    Candidate,
    Match,
    Resolution,
    canonical_component,
    component_names,
    find_component,
    match_component,
    name_evidence,
    parse_overrides,
    pick_index,
    resolve,
    resolve_plan,
)

__all__ = ["COMPONENTS", "MARGIN", "METHOD_NAMES", "NOT_RUN", "RUNNABLE", "SETTABLE", "STATUSES", "THRESHOLD",
           "Candidate", "Component", "Match", "Reading", "Resolution", "canonical_component", "change_label",
           "component_names", "find_component", "match_component", "name_evidence", "parse_overrides", "pick_index",
           "resolve",
           "resolve_plan"]
