# One job per combination (task, T, cell, strategy): its seeds train in one process, each into its own run
# directory, which appears atomically (a killed job leaves no partial run). A run whose spec is unchanged is kept,
# so a new seed trains only its own run (rnn_gradients.engine.training.train_runs). A combination whose verdict
# the listed seeds leave uncertain trains the next seeds in the same job (rnn_gradients.study.sequential): those
# runs are not declared outputs (which seeds run depends on results), the job's log says what it decided, and
# collect follows the same rule to find them.
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
        # an uncertain combination trains more seeds in this job (rnn_gradients.study.verdicts): the rule's
        # settings are params, so changing them reruns the job, which keeps every run already trained
        max_seeds=STUDY["verdicts"]["max_seeds"],
        confidence=STUDY["verdicts"]["confidence"],
        data_pattern=lambda wildcards: seed_pattern(DATA_FILE, wildcards),
        out_pattern=lambda wildcards: seed_pattern(RUN_DIR, wildcards),
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
        " --out-dir {params.run_dirs:q} --threads {threads} --max-seeds {params.max_seeds}"
        " --confidence {params.confidence} --data-pattern {params.data_pattern:q}"
        " --out-pattern {params.out_pattern:q} > {log:q} 2>&1"
