"""The report: ``report/report.qmd``, its figures, tables and sentences, built from the study tables, and the renderer.

One page per language from one source: the qmd holds its prose once per language (``report/languages.lua`` keeps
the page's), and everything these modules write comes from the message catalogue of the page's language.

==========================  =========================================================================================
module                      what it owns
==========================  =========================================================================================
``results``                 :class:`Results`: the study tables and validated config, loaded once, typed; orderings,
                            strategy facts, the control, probe phases, statistics over seeds, verdicts
``palette``                 the one palette: cell colors (in ``CELLS`` order), strategy colors and markers
``figure_style``            the seaborn theme, plain-text log ticks, the legend below the panels, divergence marks
``figures``                 figures of the gradient: activation derivatives, flow through time, norms during
                            training, measured decay against its prediction; PNG export
``outcome_figures``         figures of what the networks achieved: the metric against T, solved seeds per combination
``i18n``                    the report's languages, the current one, and the message catalogues ``messages/<lang>.yaml``
                            from which every generated word comes
``format``                  numbers and names in Markdown, in the current language; escaping of every string that
                            comes from a table or config
``text``                    the sentences of each section
``conclusions``             the conclusions: claims that hold in a strict majority of seeds, split results named
``tables``                  the report's tables
``provenance``              package versions, git state, machine, and the appendix
``page``                    what a report cell displays: a figure, a paragraph, a table, or nothing
``explorer``                the interactive explorer of every run (Vega-Lite, its JavaScript inlined once, offline)
``figure_files``            every figure as SVG and PDF under ``results/figures/``, named by label and language
``render``                  rendering ``report.qmd`` with Quarto, or offline
==========================  =========================================================================================
"""
