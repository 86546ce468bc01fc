# Gather every run directory of the grid into the study tables (docs/architecture.md, "Study tables").
rule collect:
    input:
        summaries=run_files("summary.json"),
        runtimes=run_files("runtime.json"),
        steps=run_files("steps.csv"),
        probes=run_files("probes.csv"),
        code=package_files("study/tables", "study/analysis"),
    output:
        **{name.split(".")[0]: f"{TABLES_DIR}/{name}" for name in TABLE_FILES},
    log:
        log_path(f"{TABLES_DIR}/collect"),
    benchmark:
        benchmark_path(f"{TABLES_DIR}/collect")
    params:
        study_config=json.dumps(STUDY),
        out_dir=parent_of("accuracy"),
    threads: 1
    resources:
        mem_mb=4000,
        runtime=30,
    conda:
        "../envs/rnn_gradients.yaml"
    shell:
        "python -m rnn_gradients collect --out-dir {params.out_dir:q} --study-config {params.study_config:q}"
        " {input.summaries:q} > {log:q} 2>&1"
