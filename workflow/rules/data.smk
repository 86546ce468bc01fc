# One dataset per task, T and seed, shared by every cell and strategy of that grid point.
rule generate:
    output:
        data=DATA_FILE,
    log:
        log_path(DATA_FILE),
    benchmark:
        benchmark_path(DATA_FILE)
    params:
        train_size=STUDY["data"]["train_size"],
        val_size=STUDY["data"]["val_size"],
        test_size=STUDY["data"]["test_size"],
    # Before any training job: the datasets take a second or two each, and a training job that waits for its
    # datasets would start after shorter ones (the longest training jobs start first: train.smk).
    priority: DATA_PRIORITY
    threads: 1
    resources:
        mem_mb=1000,
        runtime=10,
    conda:
        "../envs/rnn_gradients.yaml"
    shell:
        "python -m rnn_gradients generate --task {wildcards.task} --seq-len {wildcards.seq_len}"
        " --seed {wildcards.seed} --train-size {params.train_size} --val-size {params.val_size}"
        " --test-size {params.test_size}"
        " --out {output.data:q} > {log:q} 2>&1"
