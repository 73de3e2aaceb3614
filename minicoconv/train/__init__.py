"""Training: the config of a run, the training loop, checkpoints and metrics.

    from minicoconv.train import Trainer, TrainConfig
    trainer = Trainer.from_config(TrainConfig(model="resnet18", conv="static", synthetic=True, epochs=3))
    result = trainer.fit()
    print(result.best)
"""

from .checkpoint import FORMAT_VERSION, Checkpoint, CheckpointError, copy_checkpoint, load_checkpoint, save_checkpoint
from .config import ConfigError, TrainConfig
from .metrics import MetricsWriter, RunningMean, accuracy, read_metrics, topk_correct
from .prepare import DataNotFoundError, build_model, build_optimizer, load_datasets, make_loaders, model_from_checkpoint
from .trainer import FitResult, Trainer, TrainingDiverged, evaluate, train_step

__all__ = [
    "FORMAT_VERSION", "Checkpoint", "CheckpointError", "ConfigError", "DataNotFoundError", "FitResult",
    "MetricsWriter", "RunningMean", "TrainConfig", "Trainer", "TrainingDiverged", "accuracy", "build_model",
    "build_optimizer", "copy_checkpoint", "evaluate", "load_checkpoint", "load_datasets", "make_loaders",
    "model_from_checkpoint", "read_metrics", "save_checkpoint", "topk_correct", "train_step",
]
