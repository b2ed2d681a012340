"""The trained nuclei models shipped with maskrcnnpp, by name (as Detectron2's ``model_zoo``).

Each model has a config (a name in ``configs/``), an fp16 weights file inside the package
(``maskrcnnpp/weights/``), the file's SHA-256, and a card: training data and split, recipe,
budget, hardware and measured figures (``tools/model_zoo.py cards`` writes them to docs/MODEL_ZOO.md).
The configs are read from the checkout's ``configs/`` folder: install the package editable
(``pip install -e .``, as ``make setup`` does). The list lives in
``maskrcnnpp/weights/zoo.json`` (written by ``tools/model_zoo.py export``); weights are checked
against their SHA-256 before every use, so a damaged or replaced file is one clear error naming
it, never a silent load.

``MODEL.WEIGHTS`` may name a shipped model as ``zoo:<name>`` (e.g. to fine-tune from it):
:func:`resolve_weights` turns it into the checked file.
"""
from __future__ import annotations

import io
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional

import torch

from .errors import UserError
from .utils.files import atomic_path, read_json, sha256_of_file, write_json

__all__ = ["ZOO_PREFIX", "ZooModel", "default_model", "export_fp16_weights", "get", "list_models", "model_zoo_markdown",
           "model_zoo_table",
           "resolve_weights", "weights_path"]

WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"
ZOO_FILE = WEIGHTS_DIR / "zoo.json"
ZOO_PREFIX = "zoo:"
MAX_WEIGHTS_BYTES = 30 * 2**20  # what the repository accepts for one shipped model


@dataclass(frozen=True)
class ZooModel:
    """A shipped model: ``config`` (name in configs/), ``weights`` (file in maskrcnnpp/weights/), its
    ``sha256``, a one-line ``summary`` and the ``card`` (data, recipe, budget, measured figures)."""

    name: str
    config: str
    weights: str
    sha256: str
    summary: str
    card: Dict[str, Any] = field(default_factory=dict)

    @property
    def nominal_diameter(self) -> float:
        """The model's nominal nucleus diameter in pixels (its card's ``nominal_diameter``; 0: unknown)."""
        return float(self.card.get("nominal_diameter", {}).get("pixels", 0.0))

    @property
    def diameter_range(self) -> Optional[List[float]]:
        """The (low, high) nucleus diameters the model was trained on (its card's ``nominal_diameter.range``), or None."""
        found = self.card.get("nominal_diameter", {}).get("range")
        return [float(v) for v in found] if found else None

    def config_overrides(self) -> List[str]:
        """Config KEY VALUE pairs the model's card adds to its config (its nominal nucleus diameter, range and
        the diameter it predicts with by default)."""
        if not self.nominal_diameter > 0:
            return []
        overrides = ["TEST.NUCLEI.NOMINAL_DIAMETER", repr(self.nominal_diameter)]
        if self.diameter_range:
            overrides += ["TEST.NUCLEI.AUTO_DIAMETER_RANGE", repr(tuple(self.diameter_range))]
        if self.card.get("default_diameter"):
            overrides += ["TEST.NUCLEI.DIAMETER", str(self.card["default_diameter"])]
        return overrides


def _read_zoo(zoo_file: Optional[Path] = None) -> Dict[str, Any]:
    zoo_file = zoo_file or ZOO_FILE
    if not zoo_file.is_file():
        return {"default": None, "models": []}
    return read_json(str(zoo_file), "model zoo list", UserError)


def list_models(zoo_file: Optional[Path] = None) -> List[ZooModel]:
    """Every shipped model, the default first; a UserError naming the zoo file when it is malformed."""
    zoo = _read_zoo(zoo_file)
    fields = {"name", "config", "weights", "sha256", "summary", "card"}
    entries = zoo.get("models") if isinstance(zoo, dict) else None
    if not isinstance(entries, list) or any(not isinstance(e, dict) or set(e) != fields for e in entries):
        raise UserError(f"{zoo_file or ZOO_FILE} is not a model zoo list: expected an object with 'default' and "
                        f"'models', each model with exactly {sorted(fields)}")
    models = [ZooModel(**entry) for entry in entries]
    return sorted(models, key=lambda m: m.name != zoo.get("default"))


def default_model(zoo_file: Optional[Path] = None) -> Optional[str]:
    """Name of the default model (None while none is shipped)."""
    return _read_zoo(zoo_file).get("default")


def get(name: Optional[str] = None, zoo_file: Optional[Path] = None) -> ZooModel:
    """The shipped model ``name`` (None: the default); a UserError listing the known names otherwise."""
    models = {m.name: m for m in list_models(zoo_file)}
    if name is None:
        name = default_model(zoo_file)
        if name is None:
            raise UserError(f"no trained model is shipped in this version ({zoo_file or ZOO_FILE} lists none): "
                            "give a config and weights of your own training")
    if name not in models:
        known = ", ".join(models) or "none"
        raise UserError(f"unknown model {name!r}; the shipped models are: {known}")
    return models[name]


def weights_path(model: ZooModel, weights_dir: Optional[Path] = None) -> str:
    """The weights file of ``model`` after checking its SHA-256; a UserError naming the file when it is
    missing or differs from the one shipped."""
    path = (weights_dir or WEIGHTS_DIR) / model.weights
    if not path.is_file():
        raise UserError(f"weights file {path} of model {model.name!r} is missing; reinstall maskrcnnpp "
                        "(git checkout restores it)")
    actual = sha256_of_file(path)
    if actual != model.sha256:
        raise UserError(f"weights file {path} of model {model.name!r} is damaged or replaced: its SHA-256 is "
                        f"{actual}, the shipped file's is {model.sha256}; reinstall maskrcnnpp")
    return str(path)


def resolve_weights(weights: str, zoo_file: Optional[Path] = None, weights_dir: Optional[Path] = None) -> str:
    """``weights`` itself, or for ``zoo:<name>`` the checked weights file of that shipped model."""
    if not str(weights).startswith(ZOO_PREFIX):
        return weights
    return weights_path(get(str(weights)[len(ZOO_PREFIX):] or None, zoo_file), weights_dir)


def export_fp16_weights(checkpoint: str, out: str) -> str:
    """Write the model weights of a training ``checkpoint`` (a ``.pth`` with a ``model`` entry) to ``out``
    with every floating-point tensor in fp16; return the file's SHA-256."""
    state = torch.load(checkpoint, map_location="cpu", weights_only=False)
    model = state.get("model", state) if isinstance(state, dict) else None
    if not isinstance(model, dict):
        raise UserError(f"{checkpoint} holds no model state dict")
    half = {k: (v.half() if torch.is_tensor(v) and v.is_floating_point() else v) for k, v in model.items()}
    # torch.save names the zip archive inside after the file it writes: through a buffer the name is
    # fixed, so the same weights always give the same bytes and SHA-256.
    buffer = io.BytesIO()
    torch.save({"model": half, "__author__": "maskrcnnpp model zoo (fp16)"}, buffer)
    with atomic_path(out) as tmp:  # a refused file never replaces an earlier one of that name
        with open(tmp, "wb") as f:
            f.write(buffer.getvalue())
        size = os.path.getsize(tmp)
        if size > MAX_WEIGHTS_BYTES:
            raise UserError(f"{out} would be {size / 2**20:.1f} MiB, more than the {MAX_WEIGHTS_BYTES / 2**20:.0f} MiB "
                            "a shipped model may have")
    return sha256_of_file(out)


def same_weights(path_a: str, path_b: str, half: bool = False) -> bool:
    """Whether two weights files hold the same tensors under the same names (bytes may differ);
    ``half``: compare floating-point tensors in fp16 (a shipped copy against its training checkpoint)."""
    def tensors(path):
        state = torch.load(path, map_location="cpu", weights_only=False)
        model = state.get("model", state) if isinstance(state, dict) else {}
        return {k: v.half() if half and torch.is_tensor(v) and v.is_floating_point() else v for k, v in model.items()}

    a, b = tensors(path_a), tensors(path_b)
    return a.keys() == b.keys() and all(
        torch.is_tensor(a[k]) == torch.is_tensor(b[k])
        and (torch.equal(a[k], b[k]) if torch.is_tensor(a[k]) else a[k] == b[k]) for k in a)


def register(model: ZooModel, default: bool = False, zoo_file: Optional[Path] = None) -> None:
    """Add or replace ``model`` in the zoo list (and make it the default)."""
    zoo = _read_zoo(zoo_file)
    entries = [e for e in zoo.get("models", []) if e["name"] != model.name]
    entries.append({"name": model.name, "config": model.config, "weights": model.weights, "sha256": model.sha256,
                    "summary": model.summary, "card": model.card})
    zoo["models"] = sorted(entries, key=lambda e: e["name"])
    if default or zoo.get("default") is None:
        zoo["default"] = model.name
    write_json(str(zoo_file or ZOO_FILE), zoo)


def _figure(card: Dict[str, Any], key: str, fmt: str) -> str:
    value = card.get("test", {}).get(key) if key != "cpu_seconds_per_512px" else card.get(key)
    return format(value, fmt) if isinstance(value, (int, float)) else "-"


def model_zoo_table(zoo_file: Optional[Path] = None) -> str:
    """A Markdown table of the shipped models with their card figures (internal test split), default first."""
    models = list_models(zoo_file)
    if not models:
        return f"no trained model is shipped in this version ({zoo_file or ZOO_FILE} lists none)"
    default = default_model(zoo_file)
    lines = ["| model | config | score | IoU % | Dice % | AJI | PQ | mask AP | CPU s per 512x512 image | what it is |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for m in models:
        figures = [_figure(m.card, k, f) for k, f in (("score", ".3f"), ("iou", ".2f"), ("dice", ".2f"), ("aji", ".3f"),
                                                     ("pq", ".3f"), ("mask_ap", ".1f"), ("cpu_seconds_per_512px", ".2f"))]
        name = f"{m.name} (default)" if m.name == default else m.name
        lines.append(f"| {name} | {m.config} | " + " | ".join(figures) + f" | {m.summary} |")
    return "\n".join(lines)


def _ood_markdown(ood: Dict[str, Any]) -> List[str]:
    """The card's out-of-distribution check: one table of sets, kinds and groups, and the trust flags."""
    lines = ["", f"Out-of-distribution check ({ood.get('date', '?')}; `{ood.get('command', 'tools/ood_check.py')}`; "
                 "as tools/predict.py predicts with no options; external sets never trained on, docs/DATA.md):", "",
             "| images | n | score | IoU | Dice | AJI | PQ | nuclei found / true |", "|---|---|---|---|---|---|---|---|"]
    rows = [("all images", ood["overall"])] + ([("external sets", ood["external"])] if ood.get("external") else [])
    rows += [(f"set {k}", v) for k, v in ood["by_set"].items()] + [(f"kind {k}", v) for k, v in ood["by_kind"].items()]
    rows += [(f"group {k}", v) for k, v in ood["by_group"].items()]
    lines += [f"| {name} | {v['images']} | {v['score']:.3f} | {v['iou']:.3f} | {v['dice']:.3f} | {v['aji']:.3f} | "
              f"{v['pq']:.3f} | {v['nuclei']:,} / {v['gt_nuclei']:,} |" for name, v in rows]
    f = ood.get("flags")
    if f:
        share = {k: "-" if f.get(k) is None else f"{f[k]:.2f}" for k in ("precision", "recall")}
        lines += ["", f"Trust flags (tools/predict.py warnings): {f['flagged']} image(s) flagged, {f['failed']} scored "
                      f"below {f['fail_score']:g}, {f['flagged_failed']} both (precision {share['precision']}, "
                      f"recall {share['recall']})."]
    return lines


def _card_markdown(model: ZooModel, default: bool) -> List[str]:
    card = model.card
    test = card.get("test", {})
    lines = [f"## {model.name}{' (default)' if default else ''}", "", model.summary, "",
             f"- Config: `{model.config}`; weights `maskrcnnpp/weights/{model.weights}` (fp16, SHA-256 `{model.sha256}`)"]
    for key, label in (("data", "Data"), ("initial_weights", "Initial weights"), ("iterations", "Iterations"),
                       ("train_seconds_last_session", "Training seconds (last session of the run)"),
                       ("hardware", "Hardware"), ("command", "Command"), ("test_command", "Test command")):
        if key in card:
            lines.append(f"- {label}: {card[key]}")
    if card.get("overrides"):
        lines.append(f"- Recipe (overrides of `{card.get('config', model.config)}`): `{' '.join(map(str, card['overrides']))}`")
    if "nominal_diameter" in card:
        nd = card["nominal_diameter"]
        lines.append(f"- Nominal nucleus diameter (what `--diameter` rescales nuclei to): {nd['pixels']:.2f} px "
                     f"({nd.get('how', '')})")
        if card.get("default_diameter"):
            lines.append(f"- Predicts with `--diameter {card['default_diameter']}` unless told otherwise "
                         "(README, \"Image scale and channels\")")
        if nd.get("range"):
            low, high = nd["range"]
            percentiles = "-".join(f"{p:g}" for p in nd.get("range_percentiles", ()))
            lines.append(f"- Training range of nucleus diameters (`--diameter auto` brings nuclei into it): "
                         f"{low:.2f}-{high:.2f} px (percentiles {percentiles} of the same per-image medians)")
    if "cpu_seconds_per_512px" in card:
        lines.append(f"- CPU time per 512x512 image (tools/benchmark.py): {card['cpu_seconds_per_512px']:.2f} s")
    if card.get("test_time_settings"):
        settings = " ".join(f"{k} {v}" for k, v in card["test_time_settings"].items())
        lines.append(f"- Test-time settings chosen on val after training: `{settings}`"
                     + (f" ({card['test_time_selection']})" if card.get("test_time_selection") else "")
                     + (f"; the run's own test score, at the settings it trained with: {card['run_test_score']:.3f}"
                        if "run_test_score" in card else ""))
    if test:
        lines += ["", f"Internal test split ({test.get('dataset', '?')}, {test.get('images', '?')} images, "
                      f"{test.get('nuclei', '?')} nuclei, never trained on):", "",
                  "| score | IoU % | Dice % | AJI | PQ | mask AP |", "|---|---|---|---|---|---|",
                  "| " + " | ".join(_figure(card, k, f) for k, f in (("score", ".3f"), ("iou", ".2f"), ("dice", ".2f"),
                                                                      ("aji", ".3f"), ("pq", ".3f"), ("mask_ap", ".1f")))
                  + " |"]
    by_type = card.get("test_by_image_type", {})
    if by_type:
        lines += ["", "By image kind (maskrcnnpp.evaluation.image_types):", "",
                  "| kind | images | score | IoU | Dice | AJI | PQ |", "|---|---|---|---|---|---|---|"]
        lines += [f"| {kind} | {v['images']} | {v['score']:.3f} | {v['iou']:.3f} | {v['dice']:.3f} | {v['aji']:.3f} "
                  f"| {v['pq']:.3f} |" for kind, v in by_type.items()]
    if card.get("ood_check"):
        lines += _ood_markdown(card["ood_check"])
    if "subset" in card:
        lines += ["", f"Fixed subset checked in CI ({len(card['subset']['image_ids'])} test images: "
                      f"{', '.join(map(str, card['subset']['image_ids']))}): score {card['subset']['score']:.4f}."]
    return lines + [""]


def model_zoo_markdown(zoo_file: Optional[Path] = None) -> str:
    """docs/MODEL_ZOO.md: the table of :func:`model_zoo_table` and every model's card."""
    default = default_model(zoo_file)
    lines = ["# Model zoo", "", "Trained models shipped inside the package (`maskrcnnpp/model_zoo.py`); this page is "
             "written by `python tools/model_zoo.py cards`.", "", model_zoo_table(zoo_file), ""]
    for model in list_models(zoo_file):
        lines += _card_markdown(model, model.name == default)
    return "\n".join(lines)
