"""Make ``nuclei_eval_helpers`` importable from the evaluation tests however pytest imports them."""

