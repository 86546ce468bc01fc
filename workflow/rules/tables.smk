# Gather every run directory of the grid into the study tables (docs/architecture.md, "Study tables").
rule collect:
    input:
        summaries=run_files("summary.json"),
        runtimes=run_files("runtime.json"),
        steps=run_files("steps.csv"),
        probes=run_files("probes.csv"),
        code=package_files("tables", "analysis"),
    output:
        accuracy="results/tables/accuracy.csv",
        accuracy_summary="results/tables/accuracy_summary.csv",
        gradient_norms="results/tables/gradient_norms.csv",
        gradient_flow="results/tables/gradient_flow.csv",
        decay_rates="results/tables/decay_rates.csv",
        study_config="results/tables/study_config.json",
    log:
        "results/logs/tables/collect.log",
    benchmark:
        "results/benchmarks/tables/collect.tsv"
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
