from kfp.dsl import Dataset, Output


def load(config: str, data: Output[Dataset], splits: Output[Dataset]):
    """Read and check the dataset; split it once per trial into train and a clean test set."""
    from poisonlab import steps

    provenance = steps.load(config, data.path, splits.path)
    data.metadata.update({k: provenance[k] for k in ("source", "input_sha256", "n_rows")})
