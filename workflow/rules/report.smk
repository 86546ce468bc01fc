# Render the Quarto report from the tables; edits to the report or to its plotting code re-render it.
rule report:
    input:
        tables=table_files(),
        qmd=str(REPORT_QMD),
        assets=report_assets(),
        code=package_files("render", "plotting", "narrative", "analysis"),
    output:
        html="results/report/report.html",
    log:
        "results/logs/report/report.log",
    benchmark:
        "results/benchmarks/report/report.tsv"
    params:
        tables_dir=lambda wildcards, input: os.path.dirname(input.tables[0]),
    threads: 1
    resources:
        mem_mb=4000,
        runtime=30,
    conda:
        "../envs/rnn_gradients.yaml"
    shell:
        "python -m rnn_gradients render --qmd {input.qmd:q} --tables {params.tables_dir:q}"
        " --out {output.html:q} > {log:q} 2>&1"
