"""Dask clusters for seamless: the only package that imports dask, distributed and dask_jobqueue.

parameters  status-file parameters -> settings, dask config, job-script pieces (pure, no dask)
batch       what differs between SLURM, OAR and PBS, as data
clusters    cluster strings (MODULE::SYMBOL) -> a running cluster, and its job script
scaling     adaptive scaling that knows waiting work, and jobs the batch system ends
wrapper     seamless-dask-wrapper: status file, ports, supervision, shutdown
"""
