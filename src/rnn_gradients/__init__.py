"""A reproducible study of vanishing and exploding gradients in recurrent networks.

The package holds every piece of logic of the study: tasks, cells, mitigation strategies, the training loop,
gradient probes, the tables and the report. The Snakemake workflow and the Quarto report only call into it.
"""

__version__ = "0.1.0"
