"""Make ``nuclei_eval_helpers`` importable from the evaluation tests however pytest imports them."""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
