# Render the report from the tables, one page per language of the config's report.languages (report.html in
# English, report.<lang>.html in any other language: REPORT_PAGES); edits to the report or to its code re-render it.
rule report:
    input:
        tables=table_files(),
        qmd=local_path(REPORT_QMD),
        assets=report_assets(),
        code=report_code(),
    output:
        html=f"{os.path.dirname(REPORT_FILE)}/{{page}}.html",
    log:
        log_path(f"{os.path.dirname(REPORT_FILE)}/{{page}}.html"),
    benchmark:
        benchmark_path(f"{os.path.dirname(REPORT_FILE)}/{{page}}.html")
    params:
        tables_dir=lambda wildcards, input: os.path.dirname(input.tables[0]),
        lang=lambda wildcards: REPORT_PAGES[wildcards.page],
        languages=" ".join(REPORT_LANGUAGES),
    threads: 1
    resources:
        mem_mb=4000,
        runtime=30,
    conda:
        "../envs/rnn_gradients.yaml"
    shell:
        "python -m rnn_gradients render --qmd {input.qmd:q} --tables {params.tables_dir:q}"
        " --lang {params.lang} --languages {params.languages} --out {output.html:q} > {log:q} 2>&1"
