"""``checkpoints/last.ckpt``: the model at the end of every training epoch, written once."""

from __future__ import annotations

from pathlib import Path

import lightning.pytorch as pl
from lightning.pytorch.callbacks import ModelCheckpoint


class LastEpochCheckpoint(ModelCheckpoint):
    """Keeps ``last.ckpt`` in ``dirpath``: the newest training epoch, whatever validation did.

    A monitor-less checkpoint named ``last`` (one kept) saved at the end of every training
    epoch. Lightning's ``save_last`` on such a callback writes the same file a second time each
    epoch, so it is off; instead a fit that ends without an optimizer step (a classical
    segmenter's calibration), for which Lightning saves nothing per epoch, is saved when
    training ends. ``ckpt_path=last`` finds the file by its name.

    Args:
        dirpath: Folder of the checkpoint.
    """

    def __init__(self, dirpath: str | Path) -> None:
        super().__init__(
            dirpath=dirpath,
            filename=self.CHECKPOINT_NAME_LAST,
            monitor=None,
            save_top_k=1,
            every_n_epochs=1,
            save_on_train_epoch_end=True,
            enable_version_counter=False,
            save_last=False,
        )

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """Saves a fit that saved no epoch (no optimizer step), as ``save_last`` would."""
        super().on_train_end(trainer, pl_module)
        if not self.best_model_path and not trainer.fast_dev_run:
            path = str(Path(self.dirpath) / f"{self.CHECKPOINT_NAME_LAST}{self.FILE_EXTENSION}")
            trainer.save_checkpoint(path)
            self.best_model_path = path
