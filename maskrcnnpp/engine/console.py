"""What a training run prints: a short console, with everything still in ``OUTPUT_DIR/log.txt``.

Detectron2's ``default_setup`` and ``DefaultTrainer`` log the environment, the config file, the
full config and the model to the console and the log file alike: about 640 lines before the
first iteration, whose first progress line came only at iteration 20. Here the console handler
leaves out those long records (the log file keeps them, and ``config.yaml`` holds the config),
and the progress line is also printed after iterations 1, 2, 5 and 10.
"""
from __future__ import annotations

import logging
import sys

from detectron2.engine import hooks
from detectron2.utils.events import CommonMetricPrinter
from detectron2.utils.logger import setup_logger

__all__ = ["EarlyProgressWriter", "LONG_RECORDS", "keep_long_records_in_the_log_file"]

# the openings of the records that go to OUTPUT_DIR/log.txt only
LONG_RECORDS = ("Environment info:", "Contents of args.config_file=", "Running with full config:", "Model:\n")


class _NotLong(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith(LONG_RECORDS)


def keep_long_records_in_the_log_file(output_dir: str, rank: int) -> None:
    """Set up Detectron2's loggers exactly as ``default_setup`` will (``setup_logger`` is cached on
    its arguments, so ``default_setup`` gets these same loggers) with the console handlers
    filtered; call it just before ``default_setup``."""
    for logger in (setup_logger(output_dir, distributed_rank=rank, name="fvcore"),
                   setup_logger(output_dir, distributed_rank=rank)):
        for handler in logger.handlers:
            if getattr(handler, "stream", None) is sys.stdout and not any(isinstance(f, _NotLong) for f in handler.filters):
                handler.addFilter(_NotLong())


class EarlyProgressWriter(hooks.PeriodicWriter):
    """Detectron2's PeriodicWriter (every ``period`` iterations) that also prints the console
    progress line after iterations 1, 2, 5 and 10; metrics.json and TensorBoard keep their period.

    At the end of training the console line is not printed a second time for an iteration it was
    just printed for: Detectron2's ETA then divides by zero, and that ZeroDivisionError replaced
    the real reason a run stopped (an exception, or SIGTERM's exit) right after a progress line.
    """

    EARLY = (0, 1, 4, 9)  # iteration indices

    def after_step(self) -> None:
        super().after_step()
        done_by_super = (self.trainer.iter + 1) % self._period == 0 or self.trainer.iter == self.trainer.max_iter - 1
        if self.trainer.iter in self.EARLY and not done_by_super:  # twice at one iteration: ETA divides by 0
            for writer in self._writers:
                if isinstance(writer, CommonMetricPrinter):
                    writer.write()

    def after_train(self) -> None:
        for writer in self._writers:
            last = getattr(writer, "_last_write", None)  # CommonMetricPrinter's (iteration, time)
            if not (isinstance(writer, CommonMetricPrinter) and last and last[0] == self.trainer.storage.iter):
                writer.write()
            writer.close()
