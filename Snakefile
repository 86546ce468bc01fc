# The study of vanishing and exploding gradients: generate data -> train every run -> collect tables -> report.
# Every step calls the rnn_gradients command line; the logic lives in the package (docs/architecture.md).
#
#   snakemake                                  # the whole study, then the report (profile: profiles/default)
#   snakemake -n                               # what would run, and why
#   snakemake --configfile my_study.yaml       # another study (replaces config/config.yaml)
import sys
from pathlib import Path

from snakemake.utils import min_version

from rnn_gradients.study.config import StudyConfigError, load_study


min_version("9.0")


# A --configfile replaces the default study instead of being merged into it key by key (Snakemake's default),
# which would silently keep the default's tasks and strategies.
if not workflow.overwrite_configfiles:

    configfile: "config/config.yaml"


# Validate before any job: a bad config stops here with one readable line per problem, not a traceback. The
# schema's lists of allowed names come from the package (rnn_gradients.study.config.load_schema).
try:
    STUDY = load_study(config, Path(workflow.basedir) / "workflow" / "schemas" / "config.schema.yaml")
except StudyConfigError as err:
    sources = ", ".join(map(str, workflow.overwrite_configfiles)) or "config/config.yaml"
    sys.exit(f"{sources}: {err}")


include: "workflow/rules/common.smk"
include: "workflow/rules/data.smk"
include: "workflow/rules/train.smk"
include: "workflow/rules/tables.smk"
include: "workflow/rules/report.smk"


rule all:
    input:
        final_targets(),
    default_target: True


# `snakemake tables`: every run and the tables, without the report.
rule tables:
    input:
        final_targets(report=False),
