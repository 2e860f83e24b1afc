"""AIS sharded over a Dask cluster: the same estimate, bit for bit, as one process.

    python dask_ais.py                     # a local cluster of two worker processes
    python dask_ais.py tcp://host:8786     # an existing cluster's scheduler
"""

import sys

import numpy as np
from dask.distributed import Client, LocalCluster

import boltzmann


def shard(model, blocks, settings):
    return model.log_partition(blocks=blocks, **settings)


def main():
    rng = np.random.default_rng(0)
    X = (rng.random((2000, 64)) < 0.2).astype(np.float32)
    rbm = boltzmann.RBM(64, 32, seed=0).fit(X, method="pcd", epochs=10, learning_rate=0.01)
    settings = dict(method="ais", runs=400, betas=2000, data=X, seed=1)
    blocks = -(-settings["runs"] // boltzmann.AIS_BLOCK)
    if len(sys.argv) > 1:
        client = Client(sys.argv[1])
    else:
        client = Client(LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                     dashboard_address=None))
    with client:
        model = client.scatter(rbm, broadcast=True)
        futures = [client.submit(shard, model, (b, b + 1), settings, pure=False)
                   for b in range(blocks)]
        merged = boltzmann.merge_ais(client.gather(futures))
    whole = rbm.log_partition(**settings)
    print(f"{blocks} shards on the cluster: {merged}")
    print(f"one process:            {whole}")
    print("bit-identical:", merged.log_z == whole.log_z
          and np.array_equal(merged.log_weights, whole.log_weights))


if __name__ == "__main__":
    main()
