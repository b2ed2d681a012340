"""tools/train_net.py with a probe in every training process (tests/tools/test_train_net_multiprocess.py).

    python tests/helpers/ddp_probe.py PROBE_DIR <train_net.py arguments>

runs train_net's own ``cli`` (its options, its launcher) with ``main`` wrapped so that each process
writes into PROBE_DIR, for the test to compare with a single process:

* ``rank{R}_batches.json``: the ``file_name`` of every image of every batch the process trained on;
* ``rank{R}_batch0.pt``: its first batch as the model received it (after the mapper);
* ``rank{R}_before.pt`` / ``rank{R}_after.pt``: the model's weights before and after the first step;
* ``rank{R}_written.json``: every path under OUTPUT_DIR the process opened for writing, created or
  renamed onto.
"""
from __future__ import annotations

import builtins
import json
import os
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
PROBE_ENV = "MASKRCNNPP_DDP_PROBE"


def _record_writes(out_dir: str, written: list) -> None:
    """Record paths under ``out_dir`` written by this process (open for writing, os.open with a
    write flag, os.replace/os.rename targets)."""
    root = os.path.realpath(out_dir)

    def note(path) -> None:
        if isinstance(path, (str, os.PathLike)):
            full = os.path.realpath(os.fspath(path))
            if full.startswith(root + os.sep):
                written.append(os.path.relpath(full, root))

    real_open, real_os_open, real_replace, real_rename = builtins.open, os.open, os.replace, os.rename

    def open_(file, mode="r", *args, **kwargs):
        if any(c in mode for c in "wax+"):
            note(file)
        return real_open(file, mode, *args, **kwargs)

    def os_open(path, flags, *args, **kwargs):
        if flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT):
            note(path)
        return real_os_open(path, flags, *args, **kwargs)

    def replace(src, dst, *args, **kwargs):
        note(dst)
        return real_replace(src, dst, *args, **kwargs)

    def rename(src, dst, *args, **kwargs):
        note(dst)
        return real_rename(src, dst, *args, **kwargs)

    builtins.open, os.open, os.replace, os.rename = open_, os_open, replace, rename


def probed_main(args):
    """train_net.main(args) in one training process, with the probe (module doc)."""
    import torch
    from detectron2.engine import HookBase
    from detectron2.utils import comm

    import train_net
    from maskrcnnpp.engine import NucleiTrainer

    probe = Path(os.environ[PROBE_ENV])
    rank = comm.get_rank()
    opts = list(args.opts)
    written: list = []
    _record_writes(opts[opts.index("OUTPUT_DIR") + 1], written)
    batches: list = []
    build_train_loader = NucleiTrainer.build_train_loader.__func__

    def recording_loader(cls, cfg):
        for batch in build_train_loader(cls, cfg):
            if not batches:
                torch.save(batch, probe / f"rank{rank}_batch0.pt")
            batches.append([d["file_name"] for d in batch])
            yield batch

    def weights(trainer):
        model = trainer.model.module if hasattr(trainer.model, "module") else trainer.model
        return {k: v.detach().clone() for k, v in model.state_dict().items()}

    class FirstStep(HookBase):
        def before_step(self):
            if self.trainer.iter == 0:
                torch.save(weights(self.trainer), probe / f"rank{rank}_before.pt")

        def after_step(self):
            if self.trainer.iter == 0:
                torch.save(weights(self.trainer), probe / f"rank{rank}_after.pt")

    build_hooks = NucleiTrainer.build_hooks
    NucleiTrainer.build_train_loader = classmethod(recording_loader)
    NucleiTrainer.build_hooks = lambda self: [FirstStep()] + build_hooks(self)
    try:
        return train_net.main(args)
    finally:
        (probe / f"rank{rank}_batches.json").write_text(json.dumps(batches))
        (probe / f"rank{rank}_written.json").write_text(json.dumps(sorted(set(written))))


if __name__ == "__main__":
    sys.path[:0] = [str(REPO / "tools"), str(Path(__file__).resolve().parent)]
    os.environ[PROBE_ENV] = os.path.abspath(sys.argv[1])
    import train_net

    train_net.main = probed_main  # cli launches train_net.main in every process: the probe instead
    train_net.cli(sys.argv[2:])
