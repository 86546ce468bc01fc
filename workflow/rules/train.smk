# One training job (one process) per task, T and cell, training all its strategies (``jobs.training: cell``, the
# default), or per combination (``combination``): rnn_gradients.study.grid.training_jobs. Which combinations a
# job holds varies (a strategy may train some cells or lengths only), so each job is its own rule, named for what
# it trains (``train_adding_T60_lstm``), with its runs' files as outputs. Each run appears atomically in its own
# directory (a killed job leaves no partial run). A run whose spec is unchanged is kept, so a new seed or strategy
# trains only its own runs (rnn_gradients.engine.training.train_runs). A combination whose verdict the listed
# seeds leave uncertain trains the next seeds in the same job (rnn_gradients.study.sequential): those runs are not
# declared outputs (which seeds run depends on results), the job's log says what it decided, and collect follows
# the same rule to find them.
for training_job in TRAINING_JOBS:

    rule:
        name:
            training_job.name
        input:
            data=job_data(training_job),
        output:
            **job_outputs(training_job),
        log:
            log_path(training_job.path),
        benchmark:
            benchmark_path(training_job.path)
        params:
            specs=job_specs(training_job),
            run_data=job_run_data(training_job),
            run_dirs=[run_dir(key) for key in job_runs(STUDY, training_job)],
            # an uncertain combination trains more seeds in this job (rnn_gradients.study.verdicts): the rule's
            # settings are params, so changing them reruns the job, which keeps every run already trained
            max_seeds=STUDY["verdicts"]["max_seeds"],
            confidence=STUDY["verdicts"]["confidence"],
            # the file layout's patterns themselves, {seed} and all (a function: Snakemake formats strings)
            data_pattern=lambda wildcards: DATA_FILE,
            out_pattern=lambda wildcards: RUN_DIR,
        # The longest jobs start first: on a few cores the last job to start then is a short one.
        priority: relative_cost(training_job.combinations)
        # A cluster job holds several training jobs (workflow/profiles/slurm: group-components); ignored locally.
        group:
            "train"
        # One thread per job and one job per core: two 1-thread jobs outrun one 2-thread job (benchmarks/README.md).
        threads: 1
        resources:
            mem_mb=job_memory_mb(training_job),
            # minutes: the runs' whole step budget at a generous cost per step (a time limit on a cluster)
            runtime=estimated_minutes(STUDY, training_job.combinations),
        conda:
            "../envs/rnn_gradients.yaml"
        shell:
            "python -m rnn_gradients train --specs {params.specs:q} --data {params.run_data:q}"
            " --out-dir {params.run_dirs:q} --threads {threads} --max-seeds {params.max_seeds}"
            " --confidence {params.confidence} --data-pattern {params.data_pattern:q}"
            " --out-pattern {params.out_pattern:q} > {log:q} 2>&1"

    apply_training_overrides(training_job.name)
