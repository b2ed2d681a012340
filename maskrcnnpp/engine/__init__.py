"""Training/evaluation loop pieces shared by tools/ (trainer, CLI error handling, set-up)."""
from .cli import UserError, check_threshold, ensure_output_dir, exit_on_user_error  # noqa: F401
from .setup import setup_cfg  # noqa: F401
from .trainer import NucleiTrainer  # noqa: F401
