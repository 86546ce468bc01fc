# Gather every run directory of the grid into the study tables (docs/architecture.md, "Study tables").
rule collect:
    input:
        summaries=run_files("summary.json"),
        # collect reads and checks every file of every run (rnn_gradients.study.run_reader): each is an input
        others=[path for name in RUN_FILES if name != "summary.json" for path in run_files(name)],
        code=package_files("study/tables", "study/analysis", "study/run_reader"),
    output:
        **{name.split(".")[0]: f"{TABLES_DIR}/{name}" for name in TABLE_FILES},
    log:
        log_path(f"{TABLES_DIR}/collect"),
    benchmark:
        benchmark_path(f"{TABLES_DIR}/collect")
    params:
        # the limits only guard the study's size, `jobs` only splits the work and `report` only says how to render:
        # changing them must not rerun collect (and the report only for `report`)
        study_config=json.dumps({key: value for key, value in STUDY.items() if key not in ("limits", "report", "jobs")}),
        out_dir=parent_of("accuracy"),
    threads: 1
    resources:
        mem_mb=collect_memory_mb(STUDY),
        runtime=30,
    conda:
        "../envs/rnn_gradients.yaml"
    shell:
        "python -m rnn_gradients collect --out-dir {params.out_dir:q} --study-config {params.study_config:q}"
        " {input.summaries:q} > {log:q} 2>&1"
