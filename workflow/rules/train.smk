# One job per run. The run directory appears atomically (rnn_gradients.runio): a killed job leaves no partial run.
rule train:
    input:
        data="results/data/{task}/T{seq_len}/seed{seed}.npz",
    output:
        config="results/runs/{task}/T{seq_len}/{cell}/{strategy}/seed{seed}/config.json",
        steps="results/runs/{task}/T{seq_len}/{cell}/{strategy}/seed{seed}/steps.csv",
        evals="results/runs/{task}/T{seq_len}/{cell}/{strategy}/seed{seed}/evals.csv",
        probes="results/runs/{task}/T{seq_len}/{cell}/{strategy}/seed{seed}/probes.csv",
        summary="results/runs/{task}/T{seq_len}/{cell}/{strategy}/seed{seed}/summary.json",
        runtime="results/runs/{task}/T{seq_len}/{cell}/{strategy}/seed{seed}/runtime.json",
    log:
        "results/logs/runs/{task}/T{seq_len}/{cell}/{strategy}/seed{seed}.log",
    benchmark:
        "results/benchmarks/runs/{task}/T{seq_len}/{cell}/{strategy}/seed{seed}.tsv"
    params:
        spec=run_spec_json,
        out_dir=parent_of("summary"),
    # One thread per job and one job per core: two 1-thread jobs outrun one 2-thread job (MEASUREMENTS.md).
    threads: 1
    resources:
        mem_mb=2000,
        runtime=120,
    conda:
        "../envs/rnn_gradients.yaml"
    shell:
        "python -m rnn_gradients train --spec {params.spec:q} --data {input.data:q}"
        " --out-dir {params.out_dir:q} --threads {threads} > {log:q} 2>&1"
