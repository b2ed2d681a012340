#!/usr/bin/env python
"""Write a PNG screenshot of napari with the "Segment nuclei" widget after Segment (the README's picture).

    QT_QPA_PLATFORM=offscreen xvfb-run -a python tools/napari_screenshot.py --out docs/images/napari_plugin.png
    QT_QPA_PLATFORM=offscreen xvfb-run -a python tools/napari_screenshot.py --image cells.tif --out /tmp/shot.png

Without --image the image is the plugin's synthetic sample (File > Open Sample in napari), whose exact
labels give the true nucleus count. Needs the napari extra (pip install -e '.[napari]') and OpenGL:
a display, or Xvfb as above (without an OpenGL context: one error line, exit status 2).
"""
from __future__ import annotations

import argparse
import os

from maskrcnnpp.cli import UserError, exit_on_user_error


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], epilog=__doc__.split("\n\n", 1)[1],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", required=True, help="the PNG file to write")
    parser.add_argument("--image", default=None, help="an image file (default: the synthetic sample)")
    return parser


@exit_on_user_error
def main(argv=None) -> dict:
    args = build_parser().parse_args(argv)
    try:
        from maskrcnnpp.napari.screenshot import segmentation_screenshot
    except ImportError as e:
        raise UserError(f"the napari extra is not installed ({e}): pip install -e '.[napari]'") from None
    if args.image:
        from maskrcnnpp.evaluation.coco_results import file_stem
        from maskrcnnpp.inference import read_image

        image = read_image(args.image)
        name, truth = file_stem(args.image), None
    else:
        from maskrcnnpp.napari.sample_data import synthetic_nuclei

        (image, meta, _), (truth, _, _) = synthetic_nuclei()
        name = meta["name"]
    if os.path.dirname(args.out):
        os.makedirs(os.path.dirname(args.out), exist_ok=True)
    result = segmentation_screenshot(image, name, args.out, truth)
    truth_note = f" (exact labels: {result['truth']})" if "truth" in result else ""
    print(f"{name}: {result['nuclei']} nuclei{truth_note}; widget: {result['status']}; "
          f"wrote {args.out} ({result['size'][1]}x{result['size'][0]}, {os.path.getsize(args.out) / 1024:.0f} KB)")
    return result


if __name__ == "__main__":
    main()
