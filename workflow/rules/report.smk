# Render the Quarto report from the tables; edits to the report or to its plotting code re-render it.
rule report:
    input:
        tables=table_files(),
        qmd=str(REPORT_QMD),
        assets=report_assets(),
        code=report_code(),
    output:
        html=REPORT_FILE,
    log:
        log_path(REPORT_FILE),
    benchmark:
        benchmark_path(REPORT_FILE)
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
