# Every figure of the report as SVG and PDF to take away (rnn_gradients.report.figure_files): one folder,
# results/figures/, named by figure label and language (fig-flow.svg in English, fig-flow.es.svg in Spanish).
from rnn_gradients.report.figure_files import FIGURES_DIR


rule figures:
    input:
        tables=table_files(),
        code=report_code(),
    output:
        directory(FIGURES_DIR),
    log:
        log_path(FIGURES_DIR),
    benchmark:
        benchmark_path(FIGURES_DIR)
    params:
        tables_dir=lambda wildcards, input: os.path.dirname(input.tables[0]),
        languages=" ".join(REPORT_LANGUAGES),
    threads: 1
    resources:
        mem_mb=4000,
        runtime=30,
    conda:
        "../envs/rnn_gradients.yaml"
    shell:
        "python -m rnn_gradients figures --tables {params.tables_dir:q} --languages {params.languages}"
        " --out-dir {output:q} > {log:q} 2>&1"
