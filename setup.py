from setuptools import find_packages, setup

setup(
    name="delvm_tf",
    version="0.1.0",
    description="Score-matching and contrastive-divergence training of deep energy-based latent "
                "variable models (DELVM) as Keras models",
    packages=find_packages(include=["delvm_tf", "delvm_tf.*"]),
    python_requires=">=3.10",
    install_requires=[
        "keras>=3.15,<4", "tensorflow-datasets", "numpy", "pandas", "scikit-learn",
        "matplotlib", "absl-py", "pillow", "psutil",
    ],
    extras_require={
        # TensorFlow is an extra so that users choose the CPU or the CUDA build.
        "cpu": ["tensorflow-cpu==2.21.0"],
        "gpu": ["tensorflow[and-cuda]==2.21.0"],
        "test": ["pytest", "tensorboard"],
    },
)
