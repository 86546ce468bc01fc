# The study of vanishing and exploding gradients: generate data -> train every run -> collect tables -> report.
# Every step calls the rnn_gradients command line; the logic lives in the package (docs/architecture.md).
#
#   snakemake                                  # the whole study, then the report (profile: profiles/default)
#   snakemake -n                               # what would run, and why
#   snakemake --configfile my_study.yaml       # another study (replaces config/config.yaml)
import sys
from pathlib import Path

from snakemake.utils import min_version

from rnn_gradients.study.config import StudyConfigError, load_study_files

min_version("9.0")


# The study is read and validated here, before any job, with one readable line per problem naming the file and
# line (or --config) of the bad value (rnn_gradients.study.config.load_study_files). The package reads the
# config files itself rather than taking Snakemake's `config`: it refuses duplicate keys (YAML keeps the last one
# silently), names the file and line of a YAML syntax error, and parses --config values as YAML (Snakemake hands
# nested values over as text: training={steps: 5} would ask for the string '5'). A --configfile replaces the
# default study instead of being merged into it key by key (Snakemake's default, which would silently keep the
# default's tasks and strategies); --config overrides single keys on top. The schema's lists of allowed names
# come from the package (rnn_gradients.study.config.load_schema).
DEFAULT_CONFIGFILE = "config/config.yaml"
try:
    STUDY = load_study_files(
        [str(path) for path in workflow.overwrite_configfiles] or [DEFAULT_CONFIGFILE],
        workflow.config_settings.config_args or [],
        Path(workflow.basedir) / "workflow" / "schemas" / "config.schema.yaml",
    )
except StudyConfigError as err:
    sys.exit(str(err))


# Registers the default config file with Snakemake (it is read above; a valid file reads the same here).
if not workflow.overwrite_configfiles:

    configfile: DEFAULT_CONFIGFILE


# The jobs that take seconds run where snakemake runs, never in a cluster's queue behind the training jobs.
localrules:
    all,
    tables,
    collect,
    report,


include: "workflow/rules/common.smk"
include: "workflow/rules/data.smk"
include: "workflow/rules/train.smk"
include: "workflow/rules/tables.smk"
include: "workflow/rules/report.smk"
include: "workflow/rules/figures.smk"


rule all:
    input:
        final_targets(),
    default_target: True


# `snakemake tables`: every run and the tables, without the report.
rule tables:
    input:
        final_targets(report=False),
