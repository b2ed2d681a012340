"""maskrcnnpp: Mask RCNN++ (Mask R-CNN with a UNet++ nested-dense-skip FPN) on Detectron2.

Detectron2 itself is not on the package index under its name; ``make setup`` installs it
(``tools/install_detectron2.py``), or use an upstream build already in the environment.
"""
from setuptools import find_packages, setup

setup(
    name="maskrcnnpp",
    version="0.1.0",
    description="Mask RCNN++ and UNet++ baselines for nuclei instance segmentation on Detectron2",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    python_requires=">=3.9",
    packages=find_packages(include=["maskrcnnpp", "maskrcnnpp.*"]),
    # the shipped trained models (maskrcnnpp.model_zoo): fp16 weights and their list
    # and the napari plugin's manifest (maskrcnnpp/napari/napari.yaml)
    package_data={"maskrcnnpp": ["weights/*.pth", "weights/zoo.json", "napari/napari.yaml"]},
    install_requires=[
        # torch/torchvision are deliberately not pinned here: install the build that suits the
        # machine first (make setup does), so pip never pulls a second multi-GB build.
        "torch>=1.10",
        "torchvision>=0.11",
        "numpy>=1.22",
        "scipy>=1.8",
        "scikit-image>=0.19",
        "pycocotools>=2.0.6",
        "opencv-python-headless>=4.5",  # detectron2.utils.visualizer imports cv2
        "tifffile>=2022.2",
        "roifile>=2023.8",
        "fvcore>=0.1.5,<0.1.6",
        "tqdm>=4.60",
        "matplotlib>=3.5",
        "tensorboard>=2.8",
        "Pillow>=9.0",
    ],
    # shapely: Detectron2's own tests; import-linter: the layer contract in pyproject.toml.
    # napari: the plugin (maskrcnnpp/napari); napari with a Qt binding, named on its own too (napari 0.9
    # deprecates PyQt5: a napari without the [pyqt5] extra must not leave Qt out); pytest-qt for the
    # headless tests (tests/napari): it needs Qt, so it cannot sit in "test" for installs without napari.
    extras_require={
        "test": ["pytest>=7", "pytest-xdist>=3", "hypothesis>=6", "shapely>=2", "import-linter>=2"],
        "napari": ["napari[pyqt5]>=0.5", "pyqt5>=5.15", "pytest-qt>=4"],
    },
    entry_points={"napari.manifest": ["maskrcnnpp = maskrcnnpp.napari:napari.yaml"]},
)
