"""Dataset readers and downloaders (numpy/PIL only, no torch)."""

from workers.data.datasets import (
    CIFAR10_CLASSES,
    DATASET_CLASSES,
    MNIST_CLASSES,
    DatasetError,
    DatasetNotFound,
    default_data_dir,
    load_cifar10,
    load_dataset,
    load_mnist,
    resolve_data_dir,
)

__all__ = [
    "CIFAR10_CLASSES",
    "DATASET_CLASSES",
    "MNIST_CLASSES",
    "DatasetError",
    "DatasetNotFound",
    "default_data_dir",
    "load_cifar10",
    "load_dataset",
    "load_mnist",
    "resolve_data_dir",
]
