"""CPU cost of one small fit: :func:`models.loop.train_loop` against PyTorch Lightning, same model and data.

The demo's ``cnn`` at its demo size (64 px, batch 32, 14 steps per epoch, 3 epochs, AdamW, warm-up + cosine,
validation balanced accuracy after each epoch, early stopping with the best state kept) on seeded random
tensors, so only the loop differs. Lightning is not a dependency of the project: install it somewhere
apart and put it on the path, e.g.::

    pip install --target /tmp/lt lightning torchmetrics lightning-utilities --no-deps
    PYTHONPATH=$PWD:/tmp/lt python benchmarks/bench_loop.py --repeats 3

Prints one JSON line per run and a summary (median wall seconds per fit, import seconds of each).
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import torch
from torch import nn

N_TRAIN, N_VAL, BATCH, SIZE, EPOCHS, K = 448, 96, 32, 64, 3, 4


def _data(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(N_TRAIN + N_VAL, 3, SIZE, SIZE, generator=g)
    y = torch.randint(0, K, (N_TRAIN + N_VAL,), generator=g)
    return x[:N_TRAIN], y[:N_TRAIN], x[N_TRAIN:], y[N_TRAIN:]


def _model() -> nn.Module:
    from models.cnn import build_cnn

    torch.manual_seed(0)
    return build_cnn(K)


def _val_bacc(model: nn.Module, xv: torch.Tensor, yv: torch.Tensor) -> float:
    from models.metrics import balanced_accuracy

    model.eval()
    with torch.no_grad():
        pred = model(xv).argmax(1).numpy()
    return float(balanced_accuracy(yv.numpy(), pred))


def run_loop() -> float:
    from models.loop import LoopConfig, train_loop

    xt, yt, xv, yv = _data()
    model = _model()
    opt = torch.optim.AdamW(model.parameters(), lr=2e-3, weight_decay=0.05)
    g = torch.Generator().manual_seed(1)
    steps = N_TRAIN // BATCH

    def batches(epoch: int):
        order = torch.randperm(N_TRAIN, generator=g)
        for i in range(steps):
            yield order[i * BATCH:(i + 1) * BATCH]

    def step(idx: torch.Tensor) -> tuple[torch.Tensor, int]:
        return nn.functional.cross_entropy(model(xt[idx]), yt[idx]), len(idx)

    t0 = time.perf_counter()
    train_loop(model, opt, batches, step, LoopConfig(epochs=EPOCHS, patience=5, warmup_frac=0.05, grad_clip=1.0,
                                                     select="val_balanced_accuracy"),
               steps_per_epoch=steps, score=lambda e: {"val_balanced_accuracy": _val_bacc(model, xv, yv)})
    return time.perf_counter() - t0


def run_lightning() -> float:
    import lightning as L
    from lightning.pytorch.callbacks import EarlyStopping, ModelCheckpoint
    from timm.scheduler import CosineLRScheduler

    xt, yt, xv, yv = _data()
    steps = N_TRAIN // BATCH

    class Module(L.LightningModule):
        def __init__(self) -> None:
            super().__init__()
            self.model = _model()

        def training_step(self, batch, batch_idx):
            x, y = batch
            return nn.functional.cross_entropy(self.model(x), y)

        def validation_step(self, batch, batch_idx):
            x, y = batch
            self.log("val_bacc", _val_bacc(self.model, x, y), prog_bar=False)

        def configure_optimizers(self):
            opt = torch.optim.AdamW(self.model.parameters(), lr=2e-3, weight_decay=0.05)
            total = EPOCHS * steps
            warm = int(0.05 * total)
            sched = CosineLRScheduler(opt, t_initial=total - warm, warmup_t=warm, warmup_prefix=True,
                                      t_in_epochs=False)
            return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}

        def lr_scheduler_step(self, scheduler, metric):
            scheduler.step_update(self.global_step)

    g = torch.Generator().manual_seed(1)
    train = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(xt, yt), batch_size=BATCH, shuffle=True,
                                        generator=g, drop_last=True)
    val = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(xv, yv), batch_size=N_VAL)
    t0 = time.perf_counter()
    trainer = L.Trainer(accelerator="cpu", devices=1, max_epochs=EPOCHS, logger=False, enable_progress_bar=False,
                        enable_model_summary=False, gradient_clip_val=1.0, num_sanity_val_steps=0,
                        callbacks=[EarlyStopping("val_bacc", mode="max", patience=5),
                                   ModelCheckpoint(monitor="val_bacc", mode="max", dirpath=None, save_top_k=1)],
                        default_root_dir="/tmp/bench-loop-lightning")
    module = Module()
    trainer.fit(module, train, val)
    best = trainer.checkpoint_callback.best_model_path
    if best:
        module.load_state_dict(torch.load(best, weights_only=False)["state_dict"])
    return time.perf_counter() - t0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    t0 = time.perf_counter()
    import models.loop  # noqa: F401

    imports = {"loop": time.perf_counter() - t0}
    t0 = time.perf_counter()
    import lightning  # noqa: F401

    imports["lightning"] = time.perf_counter() - t0
    times: dict[str, list[float]] = {"loop": [], "lightning": []}
    for r in range(args.repeats):
        for name, fn in (("loop", run_loop), ("lightning", run_lightning)):
            s = fn()
            times[name].append(s)
            print(json.dumps({"run": r, "loop": name, "seconds": round(s, 3)}), flush=True)
    print(json.dumps({"median_seconds": {k: round(statistics.median(v), 3) for k, v in times.items()},
                      "import_seconds": {k: round(v, 3) for k, v in imports.items()},
                      "threads": torch.get_num_threads()}))


if __name__ == "__main__":
    main()
