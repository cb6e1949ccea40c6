"""The fine-tune of the encoder in use against the probe it starts from, on a demo warehouse's test split.

Trains ``dinov2_finetune`` (``encoder="auto"``: the encoder whose embeddings the probe read) once per
JSON config given, on a warehouse that already holds the demo (embeddings, ``dinov2_probe``), and prints
each run's test balanced accuracy against the probe's on the same test galaxies with the 95% paired
bootstrap CI of the difference (``metrics_json.fit.vs_probe``). It writes new registry versions: run it
on a COPY of the warehouse.

    cp -r /tmp/demo /tmp/ft-demo
    python benchmarks/bench_finetune_vs_probe.py /tmp/ft-demo '{}' '{"epochs": 4, "max_train": 0, "lr": 3e-4}'
"""

from __future__ import annotations

import argparse
import json
import time


def main() -> None:
    from models.config import make_config
    from stages.training import train_model
    from stages.versions import get_model
    from warehouse import Warehouse

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("home", help="a copy of a demo warehouse (new model versions are written into it)")
    parser.add_argument("configs", nargs="*", default=["{}"], help="JSON overrides of the demo preset, one per run")
    args = parser.parse_args()
    wh = Warehouse.open(args.home)
    for text in args.configs:
        overrides = json.loads(text)
        t0 = time.perf_counter()
        out = train_model(wh, "dinov2_finetune", make_config("dinov2_finetune", **overrides))
        fit = json.loads(get_model(wh, "dinov2_finetune", out.version)["metrics_json"])["fit"]
        v = fit.get("vs_probe") or {}
        print(json.dumps({"overrides": overrides, "seconds": round(time.perf_counter() - t0, 1),
                          "backbone": fit.get("backbone"), "img_size": out.config.img_size, "notes": out.notes,
                          **{k: v.get(k) for k in ("probe", "n_test", "finetune_balanced_accuracy",
                                                    "probe_balanced_accuracy", "difference", "ci95", "beats_probe")}}),
              flush=True)


if __name__ == "__main__":
    main()
