#!/usr/bin/env python
"""Train and evaluate any maskrcnnpp model (Mask R-CNN, Mask RCNN++, U-Net family) on nuclei.

    python tools/train_net.py --config maskrcnnpp_r101.yaml                  # train, validate, test
    python tools/train_net.py --config maskrcnnpp_tiny SOLVER.MAX_ITER 100
    python tools/train_net.py --config maskrcnnpp_r101 --eval-only MODEL.WEIGHTS out/model_best.pth
    python tools/train_net.py --config maskrcnnpp_r101 --resume                # continue a run
    python tools/train_net.py --eval-only                                      # score the default shipped model
    python tools/train_net.py --model nuclei_maskrcnnpp_r18 --eval-only        # score a shipped model
    python tools/train_net.py --config maskrcnnpp_tiny MODEL.WEIGHTS zoo:nuclei_maskrcnnpp_r18  # fine-tune it
    python tools/train_net.py --config maskrcnnpp_r101 --num-gpus 8 --num-machines 2 --machine-rank $SLURM_NODEID \\
        --dist-url tcp://$MASTER_ADDR:29500                                  # several machines (docs/CLUSTER.md)

A bare config name is looked up in configs/. Training writes OUTPUT_DIR/{metrics.json, events
(TensorBoard), model_*.pth, model_best.pth, inference/<dataset>/summary.json}. --eval-only without
MODEL.WEIGHTS (and without --resume) scores a shipped model: --model's, the one whose config --config
names, or the default one when neither is given. The device is MODEL.DEVICE, "auto" in every config:
the GPU when there is one, else the CPU. --num-gpus N starts N processes per machine (one per GPU;
on a machine without a GPU or with --device cpu, N CPU processes joined by gloo); SOLVER.IMS_PER_BATCH
is the batch of all processes together.
"""
from __future__ import annotations

import logging
import os
from typing import Optional


import maskrcnnpp  # noqa: E402  (applies Detectron2 compat measures before detectron2 imports)
import torch  # noqa: E402
from detectron2.checkpoint import DetectionCheckpointer  # noqa: E402
from detectron2.engine import default_argument_parser, default_setup  # noqa: E402
from detectron2.evaluation import verify_results  # noqa: E402
from detectron2.utils import comm  # noqa: E402
from detectron2.utils.logger import setup_logger  # noqa: E402

from maskrcnnpp import model_zoo, resolve_config_path  # noqa: E402
from maskrcnnpp.data import setup_datasets  # noqa: E402
from maskrcnnpp.data.augmentations import build_nuclei_augmentations  # noqa: E402
from maskrcnnpp.engine import NucleiTrainer  # noqa: E402
from maskrcnnpp.engine.launch import launch  # noqa: E402
from maskrcnnpp.cli import UserError, exit_on_user_error  # noqa: E402
from maskrcnnpp.config import setup_cfg  # noqa: E402
from maskrcnnpp.config import offline_variant  # noqa: E402
from maskrcnnpp.engine.console import keep_long_records_in_the_log_file  # noqa: E402
from maskrcnnpp.engine.trainer import check_datasets  # noqa: E402
from maskrcnnpp.inference.weights import describe_config, load_weights as load_model_weights  # noqa: E402


def build_parser():
    parser = default_argument_parser(epilog=__doc__)
    parser.add_argument("--config", dest="config_file", metavar="NAME_OR_FILE",
                        help="config file, or a bare name in configs/ (same as --config-file)")
    parser.add_argument("--model", default=None, metavar="NAME",
                        help="a shipped model (tools/model_zoo.py list): its config, unless --config, and its "
                             "weights as MODEL.WEIGHTS (same as MODEL.WEIGHTS zoo:NAME); --eval-only without "
                             "--config and MODEL.WEIGHTS scores the default shipped model")
    parser.add_argument("--device", choices=["cpu", "cuda"], default=None,
                        help="override MODEL.DEVICE (default: the config's, auto: the GPU when there is one, else "
                             "the CPU)")
    return parser


def shipped_model_for(config: Optional[str]) -> Optional[model_zoo.ZooModel]:
    """The shipped model whose config is ``config`` (the default model first); the default shipped
    model when ``config`` is empty or None; None when no shipped model uses ``config``."""
    if not config:
        return model_zoo.get(None)
    try:
        path = os.path.realpath(resolve_config_path(config))
    except FileNotFoundError:
        return None  # setup_cfg names the available configs
    default = model_zoo.default_model()
    models = sorted(model_zoo.list_models(), key=lambda m: m.name != default)
    return next((m for m in models if os.path.realpath(resolve_config_path(m.config)) == path), None)


def settle_model(args) -> None:
    """Settle ``args.config_file`` and, for a shipped model, MODEL.WEIGHTS in ``args.opts``: --model's
    config (unless --config) and weights; --eval-only without MODEL.WEIGHTS and --resume: the shipped
    model of --config, or the default one without --config (one line says which is scored)."""
    zoo_model = None
    if args.model:
        zoo_model = model_zoo.get(args.model)
    elif args.eval_only and not args.resume and "MODEL.WEIGHTS" not in list(args.opts)[::2]:
        zoo_model = shipped_model_for(args.config_file)
        if zoo_model is not None:
            print(f"--eval-only without MODEL.WEIGHTS: scoring the shipped model {zoo_model.name}", flush=True)
    if zoo_model is not None:
        args.config_file = args.config_file or zoo_model.config
        args.opts = ["MODEL.WEIGHTS", model_zoo.ZOO_PREFIX + zoo_model.name] + list(args.opts)
    if not args.config_file:
        raise UserError("give a config: --config NAME_OR_FILE (e.g. --config maskrcnnpp_r101.yaml) or --model NAME")


def setup(args):
    cfg = setup_cfg(args.config_file, args.opts, device=args.device)
    if cfg.MODEL.WEIGHTS.startswith(model_zoo.ZOO_PREFIX):  # a shipped model's file, its SHA-256 checked
        cfg.defrost()
        cfg.MODEL.WEIGHTS = model_zoo.resolve_weights(cfg.MODEL.WEIGHTS)
        cfg.freeze()
    # Everything that can be checked is checked before default_setup writes config.yaml and
    # log.txt into OUTPUT_DIR: a command that fails must not rewrite the run already there.
    setup_datasets(cfg)
    check_datasets(cfg, test_only=args.eval_only)  # scoring reads DATASETS.TEST only
    weights = cfg.MODEL.WEIGHTS
    if weights and "://" not in weights and not os.path.isfile(weights) and not args.resume:
        raise UserError(f"MODEL.WEIGHTS={weights} does not exist")
    if args.eval_only and not weights and not args.resume:
        raise UserError("--eval-only scores trained weights: give MODEL.WEIGHTS path/to/model_final.pth "
                        "(or --resume with the run's OUTPUT_DIR)")
    try:  # a bad INPUT.NUCLEI_AUG value would otherwise fail in the data loader, after OUTPUT_DIR is rewritten
        build_nuclei_augmentations(cfg, True)
    except ValueError as e:
        raise UserError(str(e)) from None
    if not args.eval_only:  # (--eval-only builds its model before writing anything anyway)
        # a MODEL.* value the model refuses fails here, not after config.yaml was rewritten
        probe = cfg.clone()
        probe.defrost()
        probe.MODEL.DEVICE = "cpu"
        build_or_explain(NucleiTrainer.build_model, probe)
    args.config_name = args.config_file
    return cfg


def write_run_setup(cfg, args) -> None:
    """Detectron2's default_setup: OUTPUT_DIR/config.yaml, log.txt, the environment, seeding."""
    # default_setup logs the config file's text: give it the resolved path, keep the name for messages.
    args.config_file = resolve_config_path(args.config_name)
    keep_long_records_in_the_log_file(cfg.OUTPUT_DIR, comm.get_rank())
    default_setup(cfg, args)
    setup_logger(cfg.OUTPUT_DIR, distributed_rank=comm.get_rank(), name="maskrcnnpp")  # console and log.txt
    logging.getLogger("maskrcnnpp").setLevel(logging.INFO)
    logging.getLogger("maskrcnnpp").info(
        "%s (%s) on %s, output in %s; environment, config file, full config and model: %s",
        args.config_name, cfg.MODEL.META_ARCHITECTURE, cfg.MODEL.DEVICE, cfg.OUTPUT_DIR,
        os.path.join(cfg.OUTPUT_DIR, "log.txt"))


def cannot_download(weights: str, e: Exception, args) -> UserError:
    """The error for MODEL.WEIGHTS that cannot be downloaded: it names the offline config to use."""
    return UserError(
        f"cannot download MODEL.WEIGHTS={weights} ({type(e).__name__}: {e}). Offline, train from scratch "
        f"with --config {offline_variant(getattr(args, 'config_name', args.config_file))}, or pass MODEL.WEIGHTS "
        "path/to/local.pkl")


def load_weights(cfg, model, args, checkpointer) -> None:
    """Training: load MODEL.WEIGHTS (or resume); a download failure names the offline config to use.
    Weights that fill only part of the model are allowed here (e.g. ImageNet weights of the trunk)."""
    weights = cfg.MODEL.WEIGHTS
    try:
        checkpointer.resume_or_load(weights, resume=args.resume)
    except Exception as e:  # noqa: BLE001  (download/IO errors come in many types)
        if "://" in weights and not os.path.exists(weights):
            raise cannot_download(weights, e, args) from None
        if weights and not os.path.exists(weights) and "://" not in weights:
            raise UserError(f"MODEL.WEIGHTS={weights} does not exist") from None
        raise


def load_eval_weights(cfg, model, args) -> None:
    """--eval-only: load the run's last checkpoint (--resume) or MODEL.WEIGHTS, refusing weights
    that leave part of the model unloaded (another architecture's checkpoint would otherwise be
    scored, with random weights, as a silent 0)."""
    checkpointer = DetectionCheckpointer(model, save_dir=cfg.OUTPUT_DIR)
    weights = checkpointer.get_checkpoint_file() if args.resume and checkpointer.has_checkpoint() else cfg.MODEL.WEIGHTS
    if not weights:
        raise UserError(f"--eval-only --resume: {cfg.OUTPUT_DIR} holds no checkpoint and MODEL.WEIGHTS is empty")
    if "://" in weights:
        try:
            weights = checkpointer.path_manager.get_local_path(weights)
        except Exception as e:  # noqa: BLE001  (download errors come in many types)
            raise cannot_download(weights, e, args) from None
    load_model_weights(model, weights, describe_config(cfg, args.config_name))


def build_or_explain(build, cfg):
    """Run a model/trainer builder; a config ValueError naming a MODEL.* key becomes a UserError."""
    try:
        return build(cfg)
    except ValueError as e:
        if "MODEL." in str(e):
            raise UserError(str(e)) from None
        raise


def main(args):
    cfg = setup(args)
    if args.eval_only:
        # the model is built and its weights checked before anything is written to OUTPUT_DIR
        model = build_or_explain(NucleiTrainer.build_model, cfg)
        load_eval_weights(cfg, model, args)
        write_run_setup(cfg, args)
        res = NucleiTrainer.test(cfg, model)
        if comm.is_main_process():
            verify_results(cfg, res)
        return res

    write_run_setup(cfg, args)
    trainer = build_or_explain(NucleiTrainer, cfg)
    load_weights(cfg, trainer.model, args, trainer.checkpointer)
    if args.resume and trainer.checkpointer.has_checkpoint():
        trainer.start_iter = trainer.iter + 1
    trainer.train()
    return trainer.final_test()


@exit_on_user_error
def cli(argv=None):
    args = build_parser().parse_args(argv)
    if args.num_gpus < 0 or args.num_machines < 1 or not 0 <= args.machine_rank < args.num_machines:
        raise UserError(f"--num-gpus {args.num_gpus}, --num-machines {args.num_machines}, --machine-rank "
                        f"{args.machine_rank}: need --num-gpus >= 0, --num-machines >= 1 and 0 <= --machine-rank "
                        "< --num-machines")
    args.num_gpus = max(args.num_gpus, 1)
    logging.getLogger("maskrcnnpp").setLevel(logging.INFO)
    settle_model(args)
    cpu = args.device == "cpu" or not torch.cuda.is_available()
    if args.num_gpus * args.num_machines > 1:
        setup(args)  # every mistake is one line here, before processes start (each sets up again)
    return launch(main, args.num_gpus, num_machines=args.num_machines, machine_rank=args.machine_rank,
                  dist_url=args.dist_url, args=(args,), cpu=cpu)


if __name__ == "__main__":
    cli()
