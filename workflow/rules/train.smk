# One job per combination (task, T, cell, strategy): its seeds train in one process, each into its own run
# directory, which appears atomically (a killed job leaves no partial run). A run whose spec is unchanged is kept,
# so a new seed trains only its own run (rnn_gradients.engine.training.train_runs).
rule train:
    input:
        data=combination_data,
    output:
        **combination_outputs(),
    log:
        log_path(COMBINATION_DIR),
    benchmark:
        benchmark_path(COMBINATION_DIR)
    params:
        specs=combination_specs,
        run_dirs=combination_run_dirs,
    # One thread per job and one job per core: two 1-thread jobs outrun one 2-thread job (benchmarks/README.md).
    threads: 1
    resources:
        # one run at a time: the peak of one run (rnn_gradients.study.limits)
        mem_mb=lambda wildcards: training_memory_mb(STUDY, wildcards.task, int(wildcards.seq_len)),
        # minutes: the seeds' whole step budget at a generous cost per step (a time limit on a cluster)
        runtime=lambda wildcards: estimated_minutes(STUDY, combination(wildcards)),
    conda:
        "../envs/rnn_gradients.yaml"
    shell:
        "python -m rnn_gradients train --specs {params.specs:q} --data {input.data:q}"
        " --out-dir {params.run_dirs:q} --threads {threads} > {log:q} 2>&1"
