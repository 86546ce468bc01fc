# One job per run. The run directory appears atomically (rnn_gradients.files): a killed job leaves no partial run.
rule train:
    input:
        data=DATA_FILE,
    output:
        **run_outputs(),
    log:
        log_path(RUN_DIR),
    benchmark:
        benchmark_path(RUN_DIR)
    params:
        spec=run_spec_json,
        out_dir=parent_of("summary"),
    # One thread per job and one job per core: two 1-thread jobs outrun one 2-thread job (benchmarks/README.md).
    threads: 1
    resources:
        mem_mb=2000,
        runtime=120,
    conda:
        "../envs/rnn_gradients.yaml"
    shell:
        "python -m rnn_gradients train --spec {params.spec:q} --data {input.data:q}"
        " --out-dir {params.out_dir:q} --threads {threads} > {log:q} 2>&1"
