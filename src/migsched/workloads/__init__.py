"""Workloads: the calibrated job-template catalogue and seeded job-mix generators.

`catalog.yaml` holds named templates (Rodinia with the MIGM group's inputs, MISO/NJIT/SPCL/nos ML
jobs, LLM generation jobs), each number with its source and the guesses marked. `mixes.py` turns
them into version-1 job files in the style of the paper's group (compute:memory ratios, small:large
ratios, online Poisson arrivals). docs/workloads.md documents every template.

    >>> from migsched.workloads import make_mix
    >>> doc = make_mix("scientific", jobs=8, seed=1, ratio="3:1")
    >>> doc["version"], len(doc["jobs"])
    (1, 8)
"""

from migsched.workloads.catalog import (
    JOB_CLASSES,
    Template,
    catalog_constants,
    catalog_sources,
    get_template,
    list_templates,
    template_names,
    to_job_entry,
)
from migsched.workloads.mixes import (
    MixParameterError,
    list_mixes,
    make_mix,
    mix_parameters,
    mix_summary,
    parse_ratio,
    split_counts,
)

__all__ = [
    "JOB_CLASSES", "MixParameterError", "Template", "catalog_constants", "catalog_sources",
    "get_template", "list_mixes", "list_templates", "make_mix", "mix_parameters", "mix_summary",
    "parse_ratio", "split_counts", "template_names", "to_job_entry",
]
